"""The HTML report, from real searches recorded in MLflow, and the numbers it shows."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

import tuneforge
from tuneforge.dashboards import REPORT_ARTIFACT, build_report, param_importances, summarise_algorithms
from tuneforge.dashboards._data import SearchData, TrialRow, best_so_far
from tuneforge.errors import ConfigError
from tuneforge.search_spaces import CategoricalParam, FloatParam, SearchSpace

_RUN_IDS = itertools.count()


def _search(values: list[float], algo: str = "random", params=None, space=None) -> SearchData:
    trials = tuple(TrialRow(run_id=f"r{i}", name=f"t{i}", status="FINISHED", start_ms=i,
                            params=(params[i] if params else {}),
                            metrics={} if np.isnan(v) else {"m": v}) for i, v in enumerate(values))
    return SearchData(run_id=f"parent-{next(_RUN_IDS)}", run_name=algo, experiment_id="1", algo=algo,
                      seed="0", metric="m", mode="max", status="FINISHED", start_ms=0, space=space,
                      trials=trials)


def test_best_so_far_skips_missing_values_in_both_modes() -> None:
    values = np.array([np.nan, 3.0, 1.0, np.nan, 5.0])
    np.testing.assert_array_equal(best_so_far(values, "max"), [np.nan, 3, 3, 3, 5])
    np.testing.assert_array_equal(best_so_far(values, "min"), [np.nan, 3, 1, 1, 1])


@pytest.mark.parametrize(("values", "scale"), [
    ([250_000.0, 3.0, 0.4], "log"),    # a test function's value: the early trials dwarf the rest
    ([0.91, 0.95, 0.97], "linear"),    # an accuracy
    ([-3.0, -1.0, 2.0], "linear"),     # not all positive
])
def test_wide_positive_values_get_a_log_axis(values, scale) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from tuneforge.dashboards._plots import _log_scale_if_wide

    axes = Figure().add_subplot()
    _log_scale_if_wide(axes, np.array([*values, np.nan]))
    assert axes.get_yscale() == scale


def test_algorithm_summary_counts_trials_to_the_median_target() -> None:
    fast = [_search([0.1, 0.9, 0.9, 0.9], "fast"), _search([0.2, 0.8, 1.0, 1.0], "fast")]
    slow = [_search([0.1, 0.2, 0.3, 0.9], "slow"), _search([0.1, 0.1, 0.1, 0.5], "slow")]
    summaries, target = summarise_algorithms(fast + slow)
    assert target == pytest.approx(0.9)  # median of the finals 0.9, 1.0, 0.9, 0.5
    by_algo = {s.algo: s for s in summaries}
    assert by_algo["fast"].trials_to_target == 2.5  # reached at trial 2 and trial 3
    assert by_algo["slow"].trials_to_target == 4.0  # one of two searches reached it, at trial 4
    assert by_algo["fast"].final_best_mean == pytest.approx(0.95)
    assert by_algo["slow"].curves.shape == (2, 4)


def test_importance_finds_the_param_the_metric_depends_on() -> None:
    space = SearchSpace(name="s", trainable="t", metric="m", mode="max", params=(
        FloatParam("useful", 0.0, 1.0), FloatParam("noise", 0.0, 1.0), CategoricalParam("c", ("a", "b"))))
    rng = np.random.default_rng(0)
    params = [{"useful": float(u), "noise": float(n), "c": str(c)}
              for u, n, c in zip(rng.random(40), rng.random(40), rng.choice(["a", "b"], 40), strict=True)]
    values = [p["useful"] ** 2 for p in params]
    by_evaluator = param_importances(_search(values, params=params, space=space))
    assert list(by_evaluator) == ["PED-ANOVA", "fANOVA"]
    for shares in by_evaluator.values():
        assert max(shares, key=shares.get) == "useful" and shares["useful"] > 0.6, shares
        assert sum(shares.values()) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def wine_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The store of ``two_searches``."""
    return f"sqlite:///{tmp_path_factory.mktemp('wine') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def two_searches(ray_local, wine_store: str, tmp_path_factory: pytest.TempPathFactory) -> list:
    """Two searches of experiment ``wine`` in ``wine_store``, run once for the tests that read them."""
    common = {"tracking_uri": wine_store, "storage": tmp_path_factory.mktemp("ray"), "experiment": "wine"}
    return [tuneforge.search("svc-wine", algo="random", trials=10, seed=1, **common),
            tuneforge.search("svc-wine", algo="grid", grid_points=2, **common)]


def test_report_of_two_searches(two_searches, wine_store: str, tmp_path: Path) -> None:
    tracking_uri = wine_store
    path = build_report("wine", tracking_uri=tracking_uri, out_dir=tmp_path / "out")
    page = path.read_text()
    assert path == tmp_path / "out" / "report.html"
    assert "Algorithms compared" in page and page.count("<h2>Search ") == 2
    # The comparison; per search: best over time, Optuna's history, parallel coordinates, slice,
    # contour, importances (10 and 8 scored trials) and empirical distribution.
    assert page.count("class='plot'") == 1 + 2 * 7
    external = re.findall(r"<script[^>]* src=", page)
    assert external == [] and "Plotly.newPlot" in page, "plotly.js is in the page, not fetched"
    for result in two_searches:
        best = result.best
        assert f"#/experiments/{result.experiment_id}/runs/{result.parent_run_id}" in page
        assert f"#/experiments/{result.experiment_id}/runs/{best.run_id}" in page
    assert "fANOVA importance" in page and "PED-ANOVA importance" in page
    for result in two_searches:  # each search logged its own at its end; the newest has this one now
        logged = MlflowClient(tracking_uri).list_artifacts(result.parent_run_id, "report")
        assert [a.path for a in logged] == [REPORT_ARTIFACT]
    client = MlflowClient(tracking_uri)
    newest = client.download_artifacts(two_searches[-1].parent_run_id, REPORT_ARTIFACT, str(tmp_path))
    searches_shown = Path(newest).read_text().count("<h2>Search ")
    assert searches_shown == 2, "tuneforge report replaced it"


def test_an_unknown_experiment_lists_the_existing_ones(two_searches, wine_store: str, tmp_path) -> None:
    tracking_uri = wine_store
    with pytest.raises(ConfigError, match=r"experiment 'vine' not found in .*; experiments: .*wine"):
        build_report("vine", tracking_uri=tracking_uri, out_dir=tmp_path)
    assert not (tmp_path / "report.html").exists()


def test_dashboards_never_import_trainables_or_torch() -> None:
    script = ("import sys, tuneforge.dashboards\n"
              "print(sorted(m for m in sys.modules if m.startswith('tuneforge.trainables') or m == 'torch'))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_large_study_is_sampled_for_fanova_and_the_contour_in_order_and_seeded() -> None:
    import optuna

    from tuneforge.dashboards._figures import _sample

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    distribution = optuna.distributions.FloatDistribution(0.0, 1.0)
    study.add_trials([optuna.trial.create_trial(params={"x": i / 50}, distributions={"x": distribution},
                                                value=float(i)) for i in range(50)])
    sample = _sample(study, 10)
    numbers = [t.values[0] for t in sample.trials]
    assert len(numbers) == 10 and numbers == sorted(numbers) and len(set(numbers)) == 10
    assert [t.values[0] for t in _sample(study, 10).trials] == numbers, "the same sample every time"
    assert _sample(study, 50) is study and len(study.trials) == 50
