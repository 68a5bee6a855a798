"""Reports built from what MLflow recorded. Reads MLflow (and the logged spaces), never trainables."""

from __future__ import annotations

from tuneforge.dashboards.report import (
    REPORT_ARTIFACT,
    build_comparison_report,
    build_report,
    param_importances,
    summarise_algorithms,
)

__all__ = ["REPORT_ARTIFACT", "build_comparison_report", "build_report", "param_importances",
           "summarise_algorithms"]
