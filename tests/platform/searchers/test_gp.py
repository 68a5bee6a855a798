"""The GP searcher's maths against direct computations and known properties, and its adapter."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from ray import tune
from scipy.stats import norm

from tuneforge.platform.searchers._gp.acquisition import log_ei, log_ei_grad, log_h
from tuneforge.platform.searchers._gp.bo import propose
from tuneforge.platform.searchers._gp.gp import GP, NOISE_FLOOR, GPParams, _neg_log_posterior, fit_gp
from tuneforge.platform.searchers._gp.kernel import matern52, scaled_sq_dist
from tuneforge.platform.searchers._gp.outputs import warp
from tuneforge.platform.searchers.gp_searcher import GPSearcher
from tuneforge.search_spaces import FloatParam, IntParam, SearchSpace

RNG = np.random.default_rng(0)
PARAMS = GPParams(ell=np.array([0.3, 0.7]), signal=1.3, noise=1e-3)


def test_posterior_matches_a_direct_solve_on_a_tiny_problem() -> None:
    X, y, Xq = RNG.random((6, 2)), RNG.standard_normal(6), RNG.random((4, 2))
    K = matern52(scaled_sq_dist(X, X, PARAMS.ell), PARAMS.signal) + PARAMS.noise * np.eye(6)
    Kq = matern52(scaled_sq_dist(Xq, X, PARAMS.ell), PARAMS.signal)
    mean = Kq @ np.linalg.inv(K) @ y
    var = PARAMS.signal - np.einsum("ij,jk,ik->i", Kq, np.linalg.inv(K), Kq)
    got_mean, got_var = GP.condition(X, y, PARAMS).predict(Xq)
    np.testing.assert_allclose(got_mean, mean, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(got_var, var, rtol=1e-6, atol=1e-10)


def test_covariance_is_symmetric_and_positive_semidefinite() -> None:
    X = RNG.random((40, 3))
    K = matern52(scaled_sq_dist(X, X, np.array([0.2, 1.0, 5.0])), 2.0)
    np.testing.assert_allclose(K, K.T)
    assert np.linalg.eigvalsh(K).min() > -1e-10
    np.testing.assert_allclose(np.diag(K), 2.0)  # k(x, x) = signal variance


def test_log_h_matches_the_direct_formula_where_it_is_stable_and_stays_finite_beyond() -> None:
    z = np.linspace(-5, 5, 101)
    np.testing.assert_allclose(log_h(z), np.log(norm.pdf(z) + z * norm.cdf(z)), rtol=1e-9, atol=1e-12)
    far = np.array([-40.0, -1e3, -1e10])
    assert np.all(np.isfinite(log_h(far))) and np.all(np.diff(log_h(far)) < 0)
    # the asymptote: log h(z) ~ -z^2/2 - log(2 pi)/2 - 2 log|z|
    asymptote = -0.5e6 - 0.5 * math.log(2 * math.pi) - 2 * math.log(1e3)
    assert log_h(np.array([-1e3]))[0] == pytest.approx(asymptote)


def test_log_ei_gradient_matches_finite_differences_also_far_from_the_incumbent() -> None:
    X, y = RNG.random((12, 2)), RNG.standard_normal(12)
    gp = GP.condition(X, y, PARAMS)
    for best in (0.5, 30.0):  # 30: z of about -25, where EI itself underflows
        x = RNG.random(2)
        [value], [grad] = log_ei_grad(*gp.predict_with_grad(x[None]), best)
        assert value == pytest.approx(log_ei(*gp.predict(x[None]), best)[0])
        numeric = [(log_ei(*gp.predict((x + h)[None]), best)[0] - log_ei(*gp.predict((x - h)[None]), best)[0])
                   / 2e-6 for h in np.eye(2) * 1e-6]
        np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-6)
        assert np.all(np.isfinite(grad))


def test_gradients_at_a_batch_of_points_are_each_point_s_own() -> None:
    """The acquisition's starts climb together (one L-BFGS-B run): a batch's values and
    gradients must be those of its points one by one."""
    X, y = RNG.random((12, 3)), RNG.standard_normal(12)
    gp = GP.condition(X, y, GPParams(ell=np.array([0.3, 0.7, 0.5]), signal=1.3, noise=1e-3))
    batch = RNG.random((4, 3))
    values, grads = log_ei_grad(*gp.predict_with_grad(batch), 0.5)
    for point, value, grad in zip(batch, values, grads, strict=True):
        [alone], [alone_grad] = log_ei_grad(*gp.predict_with_grad(point[None]), 0.5)
        assert value == pytest.approx(alone) and np.allclose(grad, alone_grad)


def test_marginal_likelihood_gradient_matches_finite_differences() -> None:
    X, y = RNG.random((15, 3)), RNG.standard_normal(15)
    D2 = (X[:, None, :] - X[None, :, :]) ** 2
    theta = np.array([-1.0, 0.0, 0.5, 0.2, -3.0])
    _, grad = _neg_log_posterior(theta, X, y, D2)
    loss = lambda t: _neg_log_posterior(t, X, y, D2)[0]  # noqa: E731
    numeric = [(loss(theta + h) - loss(theta - h)) / 2e-6 for h in np.eye(5) * 1e-6]
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-6)


def test_fitted_length_scales_find_the_one_dimension_that_matters() -> None:
    X = RNG.random((40, 3))
    y = np.sin(6 * X[:, 1])
    gp = fit_gp(X, (y - y.mean()) / y.std(), rng=np.random.default_rng(1))
    relevant, *irrelevant = gp.params.ell[[1, 0, 2]]
    assert relevant < 1.0 and all(other > 10 * relevant for other in irrelevant), gp.params.ell


def test_warp_keeps_the_order_and_standardises() -> None:
    y = np.array([-1e6, -3.0, -2.0, -1.0, 0.0])  # a long tail of bad values
    z = warp(y)
    assert np.all(np.diff(z) > 0) and z.mean() == pytest.approx(0) and z.std() == pytest.approx(1)
    assert z[1] - z[0] < 10 * (z[4] - z[1])  # the tail is pulled in
    np.testing.assert_array_equal(warp(np.full(4, 2.0)), np.zeros(4))


def test_pending_points_spread_a_batch() -> None:
    X = RNG.random((10, 2))
    y = -np.sum((X - 0.3) ** 2, axis=1)
    snap = lambda A: A  # noqa: E731
    batch, pending = [], np.zeros((0, 2))
    for _ in range(4):
        x, _ = propose(X, y, pending, snap=snap, neighbours=lambda x: np.zeros((0, 2)),
                       fixed=np.zeros(2, bool), rng=np.random.default_rng(2))
        batch.append(x)
        pending = np.vstack([pending, x])
    gaps = [np.linalg.norm(a - b) for i, a in enumerate(batch) for b in batch[i + 1:]]
    assert min(gaps) > 0.02, batch


SPACE = SearchSpace(name="s", trainable="t", metric="loss", mode="min",
                    params=(FloatParam("lr", 1e-4, 1e-1, log=True), IntParam("layers", 1, 5)))


def test_state_is_plain_json_and_keeps_pending_trials(tmp_path: Path) -> None:
    searcher = GPSearcher(SPACE, metric="loss", mode="min", seed=0)
    for index in range(8):
        config = searcher.suggest(str(index))
        searcher.on_trial_complete(str(index), {"loss": config["lr"] * config["layers"]})
    pending = searcher.suggest("pending")
    searcher.save(str(tmp_path / "state.json"))
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["version"] == 2 and len(state["observed"]) == 8 and list(state["pending"]) == ["pending"]
    restored = GPSearcher()
    restored.restore(str(tmp_path / "state.json"))
    restored.on_trial_complete("pending", {"loss": 0.5})
    assert len(restored.get_state()["observed"]) == 9
    assert SPACE.encode(pending).tolist() == restored.get_state()["observed"][-1][:-1]


def test_takes_a_plain_tune_param_space_and_nested_names() -> None:
    searcher = GPSearcher(metric="loss", mode="min", seed=1)
    config = {"optimizer": {"lr": tune.loguniform(1e-4, 1e-1)}, "layers": tune.randint(1, 4), "epochs": 3}
    assert searcher.set_search_properties(None, None, config) is True
    for index in range(8):
        suggestion = searcher.suggest(str(index))
        assert set(suggestion) == {"optimizer", "layers"} and 1 <= suggestion["layers"] <= 3
        searcher.on_trial_complete(str(index), {"loss": suggestion["optimizer"]["lr"]})


def test_points_to_evaluate_come_first_and_bad_ones_are_refused() -> None:
    searcher = GPSearcher(SPACE, metric="loss", mode="min", points_to_evaluate=[{"lr": 0.01, "layers": 2}])
    assert searcher.suggest("a") == {"lr": 0.01, "layers": 2}
    with pytest.raises(ValueError, match="not in the search space"):
        outside = [{"lr": 5.0, "layers": 2}]
        GPSearcher(SPACE, metric="loss", mode="min", points_to_evaluate=outside).suggest("a")


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"metric": "loss", "mode": "lowest"}, ValueError, "mode 'min' or 'max'"),
    ({"metric": "loss", "mode": "min", "acquisition": "pi"}, ValueError, "acquisition 'pi'"),
])
def test_bad_settings_are_named_at_first_use(kwargs, error, message) -> None:
    searcher = GPSearcher(SPACE, **kwargs)  # constructing does no work
    with pytest.raises(error, match=message):
        searcher.suggest("a")


def test_without_a_space_it_says_what_to_do() -> None:
    with pytest.raises(RuntimeError, match="has no search space"):
        GPSearcher(metric="loss", mode="min").suggest("a")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_noiseless_quadratic_is_fitted_without_noise_and_solved_to_1e_4_within_30_evaluations(seed) -> None:
    """Issue 13: on a smooth noiseless function the fitted noise goes to its floor, so that the
    last steps close in on the optimum instead of stopping a noise's worth short of it."""
    space = SearchSpace(name="q", trainable="t", metric="loss", mode="min",
                        params=(FloatParam("x", -2.0, 3.0), FloatParam("y", -2.0, 3.0)))
    searcher = GPSearcher(space, metric="loss", mode="min", seed=seed)
    best = math.inf
    for index in range(30):
        config = searcher.suggest(str(index))
        loss = (config["x"] - 0.37) ** 2 + (config["y"] + 1.21) ** 2
        searcher.on_trial_complete(str(index), {"loss": loss})
        best = min(best, loss)
    fitted = GPParams.from_theta(np.array(searcher.get_state()["gp"]))
    assert fitted.noise == pytest.approx(NOISE_FLOOR, rel=1e-3), fitted
    assert best <= 1e-4


def test_on_a_space_with_discrete_coordinates_the_noise_keeps_its_whole_prior() -> None:
    """The same noiseless data: fitted as a continuous space's, the noise goes to its floor; as
    a space's with ints or categoricals, the whole log-normal holds it well above the floor."""
    X = RNG.random((25, 2))
    y = -np.sum((X - 0.4) ** 2, axis=1)
    z = (y - y.mean()) / y.std()
    continuous = fit_gp(X, z, rng=np.random.default_rng(0)).params.noise
    discrete = fit_gp(X, z, rng=np.random.default_rng(0), discrete=True).params.noise
    assert continuous == pytest.approx(NOISE_FLOOR, rel=1e-3)
    assert discrete > 100 * NOISE_FLOOR
