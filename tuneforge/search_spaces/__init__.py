"""The search-space model, its YAML loader, its adapters and the bundled spaces."""

from __future__ import annotations

from tuneforge.search_spaces._loader import bundled_spaces, load_space, parse_space, read_yaml, space_document
from tuneforge.search_spaces._params import CategoricalParam, FloatParam, IntParam, Param, n_values
from tuneforge.search_spaces.adapters import (
    DEFAULT_GRID_POINTS,
    grid_size,
    to_grid,
    to_optuna_distributions,
    to_tune_domains,
)
from tuneforge.search_spaces.space import SearchSpace

__all__ = [
    "DEFAULT_GRID_POINTS",
    "CategoricalParam",
    "FloatParam",
    "IntParam",
    "Param",
    "SearchSpace",
    "bundled_spaces",
    "grid_size",
    "load_space",
    "n_values",
    "parse_space",
    "read_yaml",
    "space_document",
    "to_grid",
    "to_optuna_distributions",
    "to_tune_domains",
]
