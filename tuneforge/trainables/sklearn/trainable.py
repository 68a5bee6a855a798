"""The ``sklearn`` trainable: cross-validate one scikit-learn estimator per trial.

Config keys it reads: ``estimator`` (see :mod:`.estimator`), ``dataset`` (see
:mod:`tuneforge.trainables.datasets`), ``cv`` (folds, default 5) and ``scoring`` (a scikit-learn
scorer name or a list; by default taken from the space's metric ``cv_<scorer>``). Every other key
is an estimator parameter, searched or fixed. Reports ``cv_<scorer>`` (mean over folds),
``cv_<scorer>_std``, ``fit_time_s`` and ``score_time_s``, once, with the artifact
``cv_report.json`` (per-fold scores and the estimator's full parameters). One step, no
checkpoint: a restarted trial simply runs again. After the search, :func:`final_model` refits
the best config on all the data for MLflow (the scikit-learn flavour).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge._checks import is_int
from tuneforge.errors import ConfigError
from tuneforge.search_spaces import SearchSpace
from tuneforge.trainables._session import report
from tuneforge.trainables.datasets import check_dataset, load_dataset
from tuneforge.trainables.sklearn.estimator import base_estimator, trial_estimator

__all__ = ["check", "cross_validated", "defaults", "final_model", "metrics", "prepare", "train_sklearn"]

_OWN_KEYS = ("estimator", "dataset", "cv", "scoring")
_DEFAULT_FOLDS = 5
_N_EXAMPLE_ROWS = 5
_SCORER_ALIASES = {
    "neg_rmse": "neg_root_mean_squared_error",
    "neg_mse": "neg_mean_squared_error",
    "neg_mae": "neg_mean_absolute_error",
}
"""Short metric names -> scikit-learn scorer names (``cv_neg_rmse`` reads better)."""


def _scorers(config: Mapping[str, Any]) -> list[str]:
    scoring = config["scoring"]
    return [scoring] if isinstance(scoring, str) else list(scoring)


def _estimator_params(config: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in config.items() if key not in _OWN_KEYS}


def cross_validated(config: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, Any]]:
    """The metrics a trial reports for a prepared ``config``, and its CV report."""
    from sklearn.model_selection import cross_validate

    X, y = load_dataset(config["dataset"])
    estimator = trial_estimator(base_estimator(config["estimator"]), _estimator_params(config))
    names = _scorers(config)
    scoring = {name: _SCORER_ALIASES.get(name, name) for name in names}
    scores = cross_validate(estimator, X, y, cv=config["cv"], scoring=scoring, error_score="raise")
    metrics = {"fit_time_s": float(np.mean(scores["fit_time"])),
               "score_time_s": float(np.mean(scores["score_time"]))}
    for name in names:
        metrics[f"cv_{name}"] = float(np.mean(scores[f"test_{name}"]))
        metrics[f"cv_{name}_std"] = float(np.std(scores[f"test_{name}"]))
    cv_report = {"estimator": str(estimator),
                 "params": {k: repr(v) for k, v in estimator.get_params(deep=False).items()},
                 "n_samples": int(X.shape[0]), "n_features": int(X.shape[1]),
                 "folds": {key: value.tolist() for key, value in scores.items()}}
    return metrics, cv_report


def train_sklearn(config: dict[str, Any]) -> None:
    """Cross-validate ``clone(base).set_params(**params)`` and report its scores once."""
    reported, cv_report = cross_validated(config)
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "cv_report.json").write_text(json.dumps(cv_report, indent=2))
        report(reported, artifacts=folder)


def final_model(config: Mapping[str, Any], folder: Path) -> None:
    """The best config refitted on all the data, as an MLflow scikit-learn model in ``folder``."""
    import mlflow.sklearn
    import sklearn
    import skops.io
    from mlflow.models import infer_signature

    X, y = load_dataset(config["dataset"])
    estimator = trial_estimator(base_estimator(config["estimator"]), _estimator_params(config)).fit(X, y)
    example = X[:_N_EXAMPLE_ROWS]
    signature = infer_signature(example, estimator.predict(example))
    # MLflow saves with skops, which loads only the types it is told to trust: this estimator's,
    # which tuneforge built itself (a forest's Tree, for one).
    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(estimator))
    mlflow.sklearn.save_model(estimator, str(folder), signature=signature, input_example=example,
                              skops_trusted_types=trusted,
                              pip_requirements=[f"scikit-learn=={sklearn.__version__}", "numpy"])


def _default_scoring(metric: str, base: Any) -> str:
    """``cv_<scorer>`` names its scorer; otherwise accuracy for classifiers, r2 for regressors."""
    from sklearn.base import is_classifier

    if metric.startswith("cv_") and not metric.endswith("_std"):
        return metric.removeprefix("cv_")
    return "accuracy" if is_classifier(base) else "r2"


def _check_scorers(names: list[str]) -> None:
    from sklearn.metrics import get_scorer_names

    valid = set(get_scorer_names())
    for name in names:
        if _SCORER_ALIASES.get(name, name) not in valid:
            raise ConfigError(f"scoring: {name!r} is not a scikit-learn scorer; valid: "
                              f"{', '.join(sorted(valid | set(_SCORER_ALIASES)))}")


def check(space: SearchSpace) -> None:
    """The config's own keys, before Ray starts: an estimator and a dataset are named, ``cv``
    is a whole number of folds, ``scoring`` a scorer name or a list of them."""
    config = space.config
    if "estimator" not in config:
        raise ConfigError("config.estimator: missing; name a scikit-learn estimator class, "
                          "e.g. sklearn.ensemble.RandomForestClassifier")
    if "dataset" not in config:
        raise ConfigError("config.dataset: missing; name a bundled dataset or {path: f.csv, target: col}")
    folds = config.get("cv", _DEFAULT_FOLDS)
    if not is_int(folds, minimum=2):
        raise ConfigError(f"config.cv: expected an integer number of folds >= 2, got {folds!r}")
    if "scoring" in config:
        scoring = config["scoring"]
        names = [scoring] if isinstance(scoring, str) else scoring
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise ConfigError("config.scoring: expected a scikit-learn scorer name or a list of them "
                              f"(accuracy, [accuracy, f1_macro]), got {scoring!r}")


def _check_folds(folds: int, y: np.ndarray, base: Any) -> None:
    """Every test fold needs a row; where ``cross_validate`` stratifies (a classifier on class
    labels), a row of every class, so no class may have fewer rows than there are folds."""
    from sklearn.base import is_classifier
    from sklearn.utils.multiclass import type_of_target

    if folds > len(y):
        raise ConfigError(f"config.cv: {folds} folds, but the dataset has {len(y)} rows; "
                          f"use at most {len(y)}")
    if not is_classifier(base) or type_of_target(y) not in ("binary", "multiclass"):
        return
    labels, counts = np.unique(y, return_counts=True)
    label, smallest = labels[counts.argmin()], int(counts.min())
    if folds > smallest:
        label = label.item() if isinstance(label, np.generic) else label
        raise ConfigError(f"config.cv: {folds} folds, but class {label!r} of the dataset has {smallest} "
                          f"rows; use at most {smallest} (each stratified fold holds every class)")


def prepare(space: SearchSpace) -> dict[str, Any]:
    """:func:`check`, then the estimator, its params, the dataset, the folds and the scorers."""
    check(space)
    config = dict(space.config)
    base = base_estimator(config["estimator"])
    trial_estimator(base, {**_estimator_params(config), **dict.fromkeys(space.param_names)})
    config["dataset"] = check_dataset(config["dataset"], space.source.parent if space.source else None)
    folds = config.setdefault("cv", _DEFAULT_FOLDS)
    _check_folds(folds, load_dataset(config["dataset"])[1], base)  # a CSV is read a second time
    config.setdefault("scoring", _default_scoring(space.metric, base))
    _check_scorers(_scorers(config))
    return config


def defaults(config: Mapping[str, Any]) -> dict[str, Any]:
    """The estimator's own defaults (``get_params``: ``svc__C`` of a pipeline), from which
    ``--start-from defaults`` starts."""
    return base_estimator(config["estimator"]).get_params()


def metrics(config: Mapping[str, Any]) -> frozenset[str]:
    """What :func:`train_sklearn` reports for a prepared config."""
    names = _scorers(config)
    return frozenset({"fit_time_s", "score_time_s"}
                     | {f"cv_{name}" for name in names} | {f"cv_{name}_std" for name in names})
