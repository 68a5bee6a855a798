"""Reports built from what MLflow recorded. Reads MLflow (and the logged spaces), never trainables."""

from __future__ import annotations

from tuneforge.dashboards.report import build_report, param_importances, summarise_algorithms

__all__ = ["build_report", "param_importances", "summarise_algorithms"]
