"""Warm start (``--warm-start``): the scored trials of earlier searches, as points of a new space.

:func:`read_warm_start` reads the searches of an MLflow experiment (or one search) and maps each
scored trial onto the new search's space; what the searchers do with the points is theirs. A
trial is a point when its search is comparable (same trainable, metric, mode, ``--smoke`` or
not, and fixed config) and it has a valid value for every param of the new space: from its own
params, or from its search's fixed config for a param fixed then and searched now. Every other
trial is skipped, and counted by its reason (:meth:`WarmStart.summary`, one line)::

    warm start: 14 of 20 trials of 1 earlier search used; skipped: 4 with lr outside the space,
    2 without a score

The store is only read. MLflow is imported inside the functions that use it.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge._checks import is_number
from tuneforge.errors import ConfigError
from tuneforge.platform.tracking import SCORED
from tuneforge.schema import Artifacts, Roles, Tags
from tuneforge.search_spaces import (
    CategoricalParam,
    FloatParam,
    IntParam,
    Param,
    SearchSpace,
    read_yaml,
    space_document,
)

__all__ = ["WarmStart", "read_warm_start", "typed_params"]

logger = logging.getLogger(__name__)

_FLAG = "--warm-start"
_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
"""MLflow's error codes for an id that names nothing (a name is no valid experiment id)."""
_SMOKE_PARAM = "config.smoke"
"""The parent run's param of a ``--smoke`` search (``prepare_trials`` adds ``smoke`` to the config)."""
_MISSING = object()


@dataclass(frozen=True)
class WarmStart:
    """Scored trials of earlier searches, as points of the new space."""

    source_run_ids: tuple[str, ...]
    """The parent runs (searches) read, oldest first: those of the new space's trainable."""
    trials: tuple[tuple[dict[str, Any], float], ...]
    """Each used trial's values (one for every param of the new space, each valid there) and its
    score (its last finite value of the metric), oldest first."""
    skipped: Mapping[str, int]
    """Why the other trials of those searches were skipped: reason -> number of trials, most
    first. A reason reads after its count (``2 without a score``)."""
    steps: tuple[float, ...] = ()
    """The step each used trial's score was reached at (its last ``step_metric``: a torch
    family's epoch; 1 where the trial does not log it), in the order of ``trials``."""

    def best(self, k: int, mode: str) -> list[dict[str, Any]]:
        """The values of the ``k`` best trials by score (``mode`` ``max`` or ``min``), best
        first; a point tried twice is listed once (its best score), so fewer than ``k`` may come."""
        if mode not in ("max", "min"):
            raise ValueError(f"mode: {mode!r} is not one of ['max', 'min']")
        ranked = sorted(self.trials, key=lambda trial: trial[1], reverse=mode == "max")
        best: list[dict[str, Any]] = []
        seen: set[str] = set()
        for values, _ in ranked:
            if len(best) >= k:
                break
            key = repr(list(values.items()))  # repr: True, 1 and 1.0 are three choices
            if key not in seen:
                seen.add(key)
                best.append(dict(values))
        return best

    def summary(self) -> str:
        """One line: trials used, of how many, from how many searches, and each skip reason's count."""
        n_all = len(self.trials) + sum(self.skipped.values())
        n_searches = len(self.source_run_ids)
        line = (f"warm start: {len(self.trials)} of {n_all} trial{'s' * (n_all != 1)} of {n_searches} "
                f"earlier search{'es' * (n_searches != 1)} used")
        if self.skipped:
            line += "; skipped: " + ", ".join(f"{n} {reason}" for reason, n in self.skipped.items())
        return line


def read_warm_start(source: str, space: SearchSpace, tracking_uri: str, *, smoke: bool = False,
                    step_metric: str = "training_iteration") -> WarmStart:
    """The scored trials that earlier searches in ``tracking_uri`` recorded, as points of ``space``.

    ``source`` is an MLflow experiment's name, else an experiment id, else a search's parent run
    id (or one of its trials' run ids: its search). Only searches of ``space.trainable`` are
    read; ``smoke`` says whether the new search runs with ``--smoke`` (whose trials are not
    comparable to a full search's); ``step_metric`` is the trainable's count of steps, whose last
    value says how far each trial trained (:attr:`WarmStart.steps`). Raises ConfigError, one
    line naming the flag, when the store or ``source`` does not exist, or when no search of
    ``source`` has the same trainable. Nothing is written to the store.
    """
    from tuneforge.platform._store_writer import store_exists

    if not store_exists(tracking_uri):
        raise ConfigError(f"{_FLAG}: no MLflow store at {tracking_uri}")
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment_id, searches = _find_searches(client, source, space.trainable, tracking_uri)
    trials_of = _trials_of(client, experiment_id, [search.info.run_id for search in searches])
    fixed_now = space_document(space)["config"]  # as a space.yaml holds it (objects as repr)
    used: list[tuple[dict[str, Any], float]] = []
    steps: list[float] = []
    skipped: Counter[str] = Counter()
    for search in searches:
        document = _space_of(client, search.info.run_id)
        reason = _search_reason(search.data.params, document, space, fixed_now, smoke)
        for run in trials_of.get(search.info.run_id, []):
            point = reason or _point(run, space, document, fixed_now)
            if isinstance(point, str):
                skipped[point] += 1
            else:
                used.append(point)
                steps.append(float(run.data.metrics.get(step_metric, 1.0)))
    return WarmStart(source_run_ids=tuple(search.info.run_id for search in searches), trials=tuple(used),
                     skipped=dict(skipped.most_common()), steps=tuple(steps))


def typed_params(space: SearchSpace, text: Mapping[str, str]) -> dict[str, Any]:
    """A trial run's params (MLflow keeps text) as values of ``space``'s params, for those of its
    params that ``text`` holds (other keys are ignored): the inverse of ``param_value``."""
    return {param.name: _typed_value(param, text[param.name]) for param in space.params if param.name in text}


def _typed_value(param: Param, text: str) -> Any:
    """``text`` as a value of ``param``: an int, a float, or the choice that MLflow writes as
    ``text``. Text that is none of these is returned as it is (``param.contains`` refuses it)."""
    from tuneforge.platform._store_writer import param_value

    if isinstance(param, CategoricalParam):
        return next((choice for choice in param.choices if param_value(param.name, choice) == text), text)
    try:
        return int(text) if isinstance(param, IntParam) else float(text)
    except ValueError:
        return text


def _find_searches(client: Any, source: str, trainable: str, tracking_uri: str) -> tuple[str, list[Any]]:
    """The experiment id and the parent runs, oldest first, of the searches of ``trainable`` that
    ``source`` names (see :func:`read_warm_start`); ConfigError when there are none."""
    from tuneforge.platform._store_writer import _all_runs

    experiment = _experiment(client, source)
    if experiment is not None:
        experiment_id = experiment.experiment_id
        searches = _all_runs(client, experiment_id, f"tags.`{Tags.ROLE}` = '{Roles.SEARCH}'")
        if not searches:
            raise ConfigError(f"{_FLAG}: experiment {experiment.name!r} in {tracking_uri} holds no search")
        described = f"experiment {experiment.name!r} holds searches"
    else:
        searches = [_search_run(client, source, tracking_uri)]
        experiment_id = searches[0].info.experiment_id
        described = f"run {searches[0].info.run_id!r} is a search"
    usable = sorted((s for s in searches if s.data.params.get("trainable") == trainable),
                    key=lambda search: search.info.start_time)
    if not usable:
        others = ", ".join(map(repr, sorted({s.data.params.get("trainable", "?") for s in searches})))
        raise ConfigError(f"{_FLAG}: {described} of trainable {others}, not {trainable!r}")
    if len(usable) < len(searches):
        logger.info("warm start: %d searches of another trainable ignored", len(searches) - len(usable))
    return experiment_id, usable


def _experiment(client: Any, source: str) -> Any | None:
    """The live experiment named ``source``, else the one whose id it is, else None."""
    experiment = client.get_experiment_by_name(source)
    if experiment is None:
        experiment = _or_none(client.get_experiment, source)
        if experiment is not None and experiment.experiment_id != source:
            experiment = None  # a SQLite store reads a run id of digits, 000..., as experiment 0
    return experiment if experiment is not None and experiment.lifecycle_stage == "active" else None


def _search_run(client: Any, source: str, tracking_uri: str) -> Any:
    """The search's parent run whose id, or whose trial's run id, ``source`` is; else ConfigError."""
    run = _or_none(client.get_run, source)
    if run is not None and run.data.tags.get(Tags.ROLE) == Roles.TRIAL:
        run = _or_none(client.get_run, run.data.tags.get(Tags.PARENT_RUN_ID, ""))
    if run is None or run.info.lifecycle_stage != "active" or run.data.tags.get(Tags.ROLE) != Roles.SEARCH:
        raise ConfigError(f"{_FLAG}: no experiment or search run {source!r} in {tracking_uri}")
    return run


def _or_none(get: Callable[[str], Any], key: str) -> Any | None:
    """``get(key)``, or None where MLflow says that ``key`` names nothing."""
    from mlflow.exceptions import MlflowException

    try:
        return get(key)
    except MlflowException as exc:
        if exc.error_code in _NOT_FOUND:
            return None
        raise


def _trials_of(client: Any, experiment_id: str, search_ids: list[str]) -> dict[str, list[Any]]:
    """The trial runs of each search (by its parent run id), oldest first."""
    from tuneforge.platform._store_writer import _all_runs

    query = f"tags.`{Tags.ROLE}` = '{Roles.TRIAL}'"
    if len(search_ids) == 1:
        query += f" and tags.`{Tags.PARENT_RUN_ID}` = '{search_ids[0]}'"
    trials: dict[str, list[Any]] = {}
    for run in sorted(_all_runs(client, experiment_id, query), key=lambda run: run.info.start_time):
        trials.setdefault(run.data.tags.get(Tags.PARENT_RUN_ID, ""), []).append(run)
    return trials


def _space_of(client: Any, run_id: str) -> Mapping[str, Any] | None:
    """The search's space document (``space.yaml``), or None where it cannot be read."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as folder:
        try:
            document = read_yaml(Path(client.download_artifacts(run_id, Artifacts.SPACE, folder)))
        except (MlflowException, OSError, ConfigError) as exc:
            logger.debug("warm start: %s of run %s cannot be read (%s)", Artifacts.SPACE, run_id, exc)
            return None
    return document if isinstance(document, Mapping) else None


def _search_reason(params: Mapping[str, str], document: Mapping[str, Any] | None, space: SearchSpace,
                   fixed_now: Mapping[str, Any], smoke: bool) -> str | None:
    """Why none of a search's trials is comparable to the new search's (None: they may be)."""
    from tuneforge.platform._store_writer import param_value

    if (params.get("metric"), params.get("mode")) != (space.metric, space.mode):
        optimised = "maximised" if params.get("mode") == "max" else "minimised"
        return f"of a search that {optimised} {params.get('metric')}"
    if (params.get(_SMOKE_PARAM) == param_value(_SMOKE_PARAM, True)) != smoke:
        return "of a search without --smoke" if smoke else "of a --smoke search"
    if document is None:
        return f"of a search whose {Artifacts.SPACE} cannot be read"
    fixed_then = _section(document, "config")
    for key, value in fixed_now.items():
        if key in fixed_then and fixed_then[key] != value:
            return f"of a search with {key} {fixed_then[key]} (here {value})"
    return None


def _point(run: Any, space: SearchSpace, document: Mapping[str, Any],
           fixed_now: Mapping[str, Any]) -> tuple[dict[str, Any], float] | str:
    """A trial of a comparable search as (values of the new space's params, score), or the
    reason it is skipped."""
    score = _score(run, space.metric)
    if score is None:
        return "without a score"
    fixed_then, text = _section(document, "config"), run.data.params
    values = {}
    for param in space.params:
        value = _typed_value(param, text[param.name]) if param.name in text else _fixed(param, fixed_then)
        if value is _MISSING:
            return f"with no value for {param.name}"
        if not param.contains(value):
            return f"with {param.name} outside the space"
        values[param.name] = value
    searched_then = _section(document, "params")
    for key, value in fixed_now.items():
        if key in searched_then and not _same(text.get(key), value, key):  # searched then, fixed now
            return f"with {key} other than the fixed {value}"
    return values, score


def _score(run: Any, metric: str) -> float | None:
    """The trial's last value of ``metric`` if it is scored (the runner's rule: FINISHED or
    STOPPED, with a finite value), else None. A run keeps only finite values; tag
    ``tuneforge.no_score`` marks one whose last value was not."""
    tags = run.data.tags
    value = run.data.metrics.get(metric)
    if tags.get(Tags.STATUS, run.info.status) not in SCORED or Tags.NO_SCORE in tags:
        return None
    return value if value is not None and math.isfinite(value) else None


def _fixed(param: Param, fixed_then: Mapping[str, Any]) -> Any:
    """The value the earlier search fixed for ``param`` in its config (a float param's as a float),
    or ``_MISSING``."""
    value = fixed_then.get(param.name, _MISSING)
    return float(value) if isinstance(param, FloatParam) and is_number(value, finite=False) else value


def _same(text: str | None, value: Any, name: str) -> bool:
    """Whether a trial's param ``text`` is ``value``: the same text, or the same number."""
    from tuneforge.platform._store_writer import param_value

    if text is None:
        return False
    if text == param_value(name, value):
        return True
    try:
        return is_number(value, finite=False) and float(text) == value
    except ValueError:
        return False


def _section(document: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A mapping of a space document (``config``, ``params``); empty where it is missing or not one."""
    section = document.get(key)
    return section if isinstance(section, Mapping) else {}
