"""Tabular datasets for trainables: scikit-learn's bundled ones, or a user's CSV file.

A dataset spec in a space's ``config`` is either a bundled name (``digits``) or
``{path: data.csv, target: label}``. :func:`check_dataset` validates a spec before any trial
starts and returns it normalised (an absolute path); :func:`load_dataset` is what trials call.
Nothing here downloads anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.errors import ConfigError, first_line

__all__ = ["BUNDLED_DATASETS", "check_dataset", "load_dataset"]

BUNDLED_DATASETS = {
    "digits": "load_digits",
    "wine": "load_wine",
    "breast_cancer": "load_breast_cancer",
    "iris": "load_iris",
    "diabetes": "load_diabetes",
}
"""Bundled dataset name -> the ``sklearn.datasets`` loader that ships it."""

_CSV_KEYS = {"path", "target"}


def check_dataset(spec: Any, base_dir: Path | None = None) -> str | dict[str, str]:
    """Validate a dataset spec; relative CSV paths are taken from ``base_dir`` (the space file's).

    Returns the spec trials receive: a bundled name, or ``{path: <absolute>, target: ...}``.
    Raises ConfigError for an unknown name, a missing file or column, or non-numeric features.
    """
    if isinstance(spec, str):
        if spec not in BUNDLED_DATASETS:
            raise ConfigError(f"config.dataset: unknown dataset {spec!r}; bundled: "
                              f"{', '.join(BUNDLED_DATASETS)}, or {{path: file.csv, target: column}}")
        return spec
    if not isinstance(spec, Mapping) or set(spec) != _CSV_KEYS:
        raise ConfigError(f"config.dataset: expected a bundled name ({', '.join(BUNDLED_DATASETS)}) "
                          f"or {{path: file.csv, target: column}}, got {spec!r}")
    path = Path(str(spec["path"])).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    normalised = {"path": str(path.resolve()), "target": str(spec["target"])}
    load_dataset(normalised)
    return normalised


def load_dataset(spec: str | Mapping[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Features ``X`` of shape (n_samples, n_features) and targets ``y`` of shape (n_samples,)."""
    if isinstance(spec, str):
        import sklearn.datasets

        return getattr(sklearn.datasets, BUNDLED_DATASETS[spec])(return_X_y=True)
    return _load_csv(Path(spec["path"]), spec["target"])


def _load_csv(path: Path, target: str) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    if not path.is_file():
        raise ConfigError(f"config.dataset.path: {path} does not exist")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config.dataset.path: {path} is not a readable CSV file: "
                          f"{first_line(exc)}") from None
    if target not in frame.columns:
        raise ConfigError(f"config.dataset.target: {target!r} is not a column of {path}; "
                          f"columns: {', '.join(map(str, frame.columns))}")
    features = frame.drop(columns=[target])
    non_numeric = [str(c) for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if non_numeric:
        raise ConfigError(f"config.dataset: {path} has non-numeric feature columns "
                          f"{non_numeric}; encode them as numbers first")
    if features.shape[1] == 0 or len(frame) < 2:
        raise ConfigError(f"config.dataset: {path} needs at least 2 rows and 1 feature column")
    X, y = features.to_numpy(dtype=float), frame[target]
    _check_values(X, y, features.columns, path, target)
    return X, y.to_numpy()


def _check_values(X: np.ndarray, y: Any, columns: Any, path: Path, target: str) -> None:
    """No estimator fits an infinite feature, nor a row without a target. (A missing feature
    is left to the estimator: some take NaN for "missing".)"""
    import pandas as pd

    infinite = np.isinf(X)
    if infinite.any():
        row, column = np.argwhere(infinite)[0]
        raise ConfigError(f"config.dataset: {path} has an infinite value in feature column "
                          f"{str(columns[column])!r} (data row {row + 1}); replace or drop it")
    missing = y.isna().to_numpy()
    if pd.api.types.is_numeric_dtype(y):
        missing = missing | np.isinf(y.to_numpy(dtype=float))
    if missing.any():
        raise ConfigError(f"config.dataset.target: column {target!r} of {path} has no finite value in "
                          f"data row {int(np.argmax(missing)) + 1}; every row needs a target")
