"""Building a trial's scikit-learn estimator: a clone of the user's base with the trial's params.

The base estimator is either an estimator object (Python API) or named by import path
(``sklearn.svm.SVC``), or by a list of import paths, which makes a pipeline
(``[sklearn.preprocessing.StandardScaler, sklearn.svm.SVC]``; params then read ``svc__C``).
Never ``cls(**params)``: that drops every setting of the base the trial does not set.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from typing import Any

from tuneforge.errors import ConfigError

__all__ = ["base_estimator", "trial_estimator"]


def _import_estimator_class(path: Any) -> type:
    module_name, _, class_name = str(path).rpartition(".")
    try:
        cls = getattr(import_module(module_name), class_name, None) if module_name else None
    except ImportError:
        cls = None
    if not isinstance(cls, type) or not hasattr(cls, "get_params"):
        raise ConfigError(f"config.estimator: {path!r} is not an importable scikit-learn estimator "
                          "class (e.g. sklearn.ensemble.RandomForestClassifier)")
    return cls


def base_estimator(spec: Any) -> Any:
    """The user's base estimator: ``spec`` itself if it is an estimator, else built from paths."""
    if hasattr(spec, "get_params") and not isinstance(spec, type):
        return spec
    if isinstance(spec, (list, tuple)) and spec:
        from sklearn.pipeline import make_pipeline

        return make_pipeline(*(_import_estimator_class(path)() for path in spec))
    if isinstance(spec, str):
        return _import_estimator_class(spec)()
    raise ConfigError(f"config.estimator: expected an import path or a list of them, got {spec!r}")


def trial_estimator(base: Any, params: Mapping[str, Any]) -> Any:
    """``clone(base).set_params(**params)``; an unknown param is a ConfigError listing valid ones."""
    from sklearn.base import clone

    valid = base.get_params(deep=True)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ConfigError(f"{unknown[0]!r} is not a parameter of {type(base).__name__}; "
                          f"valid: {', '.join(sorted(valid))}")
    return clone(base).set_params(**params)
