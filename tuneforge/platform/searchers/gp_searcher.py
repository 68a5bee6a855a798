"""tuneforge's Gaussian-process Bayesian optimiser as a Ray Tune ``Searcher``.

The only Tune-aware part of the GP searcher: it turns configs and results into arrays for
``_gp.bo.propose`` and its points back into configs. The maths lives in ``_gp/``.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune.search import Searcher
from ray.tune.utils.util import flatten_dict, unflatten_dict
from scipy.stats import qmc

from tuneforge._checks import is_number
from tuneforge.platform.searchers._gp.bo import ACQUISITIONS, propose
from tuneforge.platform.searchers._gp.gp import GPParams
from tuneforge.platform.searchers._gp.stopped import comparable_values
from tuneforge.search_spaces import CategoricalParam, FloatParam, SearchSpace, parse_space, space_document
from tuneforge.search_spaces.adapters import from_tune_domains

__all__ = ["GPSearcher"]

_STATE_VERSION = 2
_MAX_INITIAL_POINTS = 10
_MIN_INITIAL_POINTS = 5
_MIN_OBSERVATIONS_FOR_GP = 2
_SOBOL_RETRIES = 64  # draws to find an initial point not yet tried, in a small discrete space


class GPSearcher(Searcher):
    """Bayesian optimisation with a Gaussian process: tuneforge's own searcher, for any Tuner.

    It starts with ``n_initial_points`` quasi-random (Sobol) points (default: twice the number
    of params, between 5 and 10), and keeps to them until that many results are in; then it
    suggests the maximiser of the log expected improvement (or UCB) of a Matérn-5/2 GP fitted to
    the results. Trials still running count as their predicted value (kriging believer), so
    concurrent suggestions are distinct and spread out; a failed trial counts as the worst
    result seen, so the search moves away from it. Under a scheduler that stops trials early,
    the GP is fitted on every trial's value at one common number of iterations, and a trial
    stopped before it counts as the worst trial that got there (``_gp/stopped.py``).

    Give it a tuneforge :class:`SearchSpace`, or none and let the Tuner's ``param_space``
    (``tune.uniform``, ``loguniform``, ``quniform``, ``randint``, ``lograndint``, ``qrandint``,
    ``choice``) reach it through :meth:`set_search_properties`::

        tune.Tuner(train, param_space={"lr": tune.loguniform(1e-4, 1e-1), "layers": tune.randint(1, 5)},
                   tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=40,
                                               search_alg=GPSearcher(seed=0))).fit()
    """

    def __init__(self, space: SearchSpace | None = None, metric: str | None = None,
                 mode: str | None = None, *, seed: int | None = None,
                 points_to_evaluate: Sequence[Mapping[str, Any]] | None = None,
                 evaluated_rewards: Sequence[float] | None = None,
                 n_initial_points: int | None = None, acquisition: str = "logei",
                 step_metric: str = "training_iteration") -> None:
        super().__init__()
        self._metric, self._mode = metric, mode
        self.space = space
        self.seed = seed
        self.points_to_evaluate = list(points_to_evaluate or [])
        self.evaluated_rewards = list(evaluated_rewards) if evaluated_rewards is not None else None
        if self.evaluated_rewards is not None and len(self.evaluated_rewards) != len(self.points_to_evaluate):
            raise ValueError(f"evaluated_rewards: {len(self.evaluated_rewards)} rewards for "
                             f"{len(self.points_to_evaluate)} points_to_evaluate; give one for each")
        self.n_initial_points = n_initial_points
        self.acquisition = acquisition
        self.step_metric = step_metric
        """The result key that counts a trial's steps, for the rule on stopped trials."""
        self._state: dict[str, Any] | None = None

    # -- Ray Tune's Searcher contract --------------------------------------------------------

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        """Called by Tune once, before the first suggestion. Takes the metric and mode where
        none were given, and the params from ``config`` when no space was; False (Tune's "not
        taken") when a space was given and ``config`` holds Tune domains as well."""
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        params, _ = from_tune_domains(config)
        if self.space is not None:
            return not params
        self.space = SearchSpace(name="tune", trainable="tune", metric=self._metric or "metric",
                                 mode=self._mode or "max", params=params)
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """Called by Tune when it can start a trial: the trial's searched values (nested as in
        the param space, native Python types). Never FINISHED: the Tuner's ``num_samples``
        ends the search."""
        state = self._ready()
        values = self._next_values(state)
        state["pending"][trial_id] = self.space.encode(values).tolist()
        return unflatten_dict(values)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Called by Tune with each intermediate result of a running trial: its learning curve
        (``step_metric``, metric), for the rule on stopped trials."""
        step = self._curve_step(result)
        if step is not None and trial_id in self._ready()["pending"]:
            self._ready()["curves"].setdefault(trial_id, []).append(step)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Called by Tune once per trial that ended: finished, or stopped by a scheduler
        (``result``, its last, holds the metric), or failed (``error``, or a result without a
        finite metric). Unknown trials are ignored."""
        state = self._ready()
        point = state["pending"].pop(trial_id, None)
        curve = state["curves"].pop(trial_id, [])
        if point is None:
            return
        step = self._curve_step(result or {})
        if error or step is None:
            state["failed"].append(point)
            return
        if not curve or curve[-1][0] < step[0]:
            curve.append(step)
        state["observed"].append([*point, step[1]])
        state["observed_curves"].append(curve)

    def _curve_step(self, result: dict) -> list[float] | None:
        """``[iteration, value]`` of a result (the value larger-is-better), None without a
        finite metric."""
        flat = flatten_dict(result, delimiter="/")
        value = flat.get(self._metric)
        if not is_number(value):
            return None
        iteration = flat.get(self.step_metric, 1)
        return [float(iteration), float(value) if self._mode == "max" else -float(value)]

    def add_evaluated_point(self, parameters: dict, value: float, error: bool = False,
                            pruned: bool = False, intermediate_values: list[float] | None = None, *,
                            step: float | None = None) -> None:
        """Ray's contract for results obtained elsewhere (an earlier search): the point
        ``parameters`` scored ``value`` and is conditioned on like a trial of this search, without
        being run. ``error``: it failed (counts as the worst result); ``pruned``: a scheduler stopped
        it (counts with ``value``, as a stopped trial does). Its learning curve is
        ``intermediate_values`` (one per step, from 1) where given, else its one result at ``step``
        (default 1), the step counted in ``step_metric`` as this search's results are."""
        state = self._ready()
        point = self.space.encode(flatten_dict(dict(parameters), delimiter="/")).tolist()
        if error:
            state["failed"].append(point)
            return
        sign = 1.0 if self._mode == "max" else -1.0
        if intermediate_values:
            curve = [[float(i), sign * float(v)] for i, v in enumerate(intermediate_values, start=1)]
        else:
            curve = [[float(step or 1), sign * float(value)]]
        state["observed"].append([*point, curve[-1][1]])
        state["observed_curves"].append(curve)

    def get_state(self) -> dict[str, Any]:
        """Everything needed to continue: plain builtins, JSON-ready."""
        state = dict(self._ready())
        return {**state, "space": space_document(self.space), "metric": self._metric, "mode": self._mode}

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"GPSearcher state version {state.get('version')!r}; expected {_STATE_VERSION}")
        self.space = parse_space(state["space"], name="tune")
        self._metric, self._mode = state["metric"], state["mode"]
        self._state = {key: value for key, value in state.items() if key not in ("space", "metric", "mode")}

    def save(self, checkpoint_path: str) -> None:
        """Write the state as JSON, atomically (a temporary file, then ``os.replace``)."""
        folder = Path(checkpoint_path).parent
        with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, suffix=".tmp") as handle:
            json.dump(self.get_state(), handle)
        os.replace(handle.name, checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.set_state(json.loads(Path(checkpoint_path).read_text()))

    # -- internals -------------------------------------------------------------------------

    def _ready(self) -> dict[str, Any]:
        """The search state, created on first use (and the settings checked then)."""
        if self._state is not None:
            return self._state
        if self.space is None:
            raise RuntimeError("GPSearcher has no search space: pass `space` or use it in a Tuner "
                               "whose param_space has Tune domains (tune.uniform, ...)")
        if self._mode not in ("min", "max") or not self._metric:
            raise ValueError(f"GPSearcher needs a metric and mode 'min' or 'max'; got metric="
                             f"{self._metric!r}, mode={self._mode!r}")
        if self.acquisition not in ACQUISITIONS:
            raise ValueError(f"acquisition {self.acquisition!r}: valid are {sorted(ACQUISITIONS)}")
        for point in self.points_to_evaluate:
            if not self.space.contains(flatten_dict(dict(point), delimiter="/")):
                raise ValueError(f"points_to_evaluate: {dict(point)} is not in the search space")
        seed = self.seed if self.seed is not None else int(np.random.SeedSequence().entropy % 2**32)
        n_initial = self.n_initial_points or min(_MAX_INITIAL_POINTS,
                                                 max(_MIN_INITIAL_POINTS, 2 * len(self.space.params)))
        self._state = {"version": _STATE_VERSION, "seed": seed, "n_initial": n_initial,
                       "acquisition": self.acquisition,
                       "queue": [flatten_dict(dict(p), delimiter="/") for p in self.points_to_evaluate],
                       "observed": [], "observed_curves": [], "curves": {}, "failed": [],
                       "pending": {}, "n_sobol": 0, "n_proposed": 0,
                       "gp": None}
        if self.evaluated_rewards is not None:  # Ray's contract: the points were evaluated already
            points, self._state["queue"] = self._state["queue"], []
            for point, reward in zip(points, self.evaluated_rewards, strict=True):
                self.add_evaluated_point(point, reward)
        return self._state

    def _next_values(self, state: dict[str, Any]) -> dict[str, Any]:
        if state["queue"]:
            return state["queue"].pop(0)
        # The design goes on until its results are in: a model fitted on fewer says too little.
        n_done = len(state["observed"]) + len(state["failed"])
        if n_done < state["n_initial"] or len(state["observed"]) < _MIN_OBSERVATIONS_FOR_GP:
            return self._initial_values(state)
        return self.space.decode(self._propose(state))

    def _known_points(self, state: dict[str, Any]) -> np.ndarray:
        points = [row[:-1] for row in state["observed"]] + state["failed"] + list(state["pending"].values())
        return np.array(points, dtype=float).reshape(len(points), self.space.n_dims)

    def _initial_values(self, state: dict[str, Any]) -> dict[str, Any]:
        """The next point of one scrambled Sobol sequence (seeded, so restorable), decoded."""
        sobol = qmc.Sobol(self.space.n_dims, scramble=True, seed=state["seed"])
        if state["n_sobol"]:
            sobol.fast_forward(state["n_sobol"])
        known = self._known_points(state)
        for _ in range(_SOBOL_RETRIES):
            state["n_sobol"] += 1
            with warnings.catch_warnings():  # one point at a time breaks Sobol's power-of-2 balance
                warnings.simplefilter("ignore", UserWarning)
                values = self.space.decode(sobol.random(1)[0])
            point = self.space.encode(values)
            if not len(known) or np.min(np.max(np.abs(known - point), axis=1)) > 1e-9:
                break
        return values

    def _fixed_columns(self) -> np.ndarray:
        fixed = np.zeros(self.space.n_dims, dtype=bool)
        for param, columns in self.space.columns():
            fixed[columns] = isinstance(param, CategoricalParam)
        return fixed

    def _discrete(self) -> bool:
        """Whether any param takes only lattice values (an int, a stepped float, a categorical)."""
        return not all(isinstance(p, FloatParam) and p.step is None for p in self.space.params)

    def _propose(self, state: dict[str, Any]) -> np.ndarray:
        observed = np.array(state["observed"], dtype=float)
        X, y = observed[:, :-1], comparable_values(state["observed_curves"])
        if state["failed"]:  # failures count as the worst result seen
            X = np.vstack([X, np.array(state["failed"], dtype=float)])
            y = np.concatenate([y, np.full(len(state["failed"]), y.min())])
        pending = np.array(list(state["pending"].values()), dtype=float).reshape(-1, self.space.n_dims)
        rng = np.random.default_rng([state["seed"], state["n_proposed"]])
        previous = GPParams.from_theta(np.array(state["gp"])) if state["gp"] else None
        x, params = propose(X, y, pending, snap=self.space.snap, neighbours=self.space.neighbours,
                            fixed=self._fixed_columns(), rng=rng, previous=previous,
                            acquisition=state["acquisition"], discrete=self._discrete())
        state["n_proposed"] += 1
        state["gp"] = params.theta().tolist()
        return x
