"""Links into the MLflow UI that open on a search's trials, the one place that knows its URLs.

MLflow 3.17's UI opens an experiment in its GenAI view (traces) unless the URL says
``workflowType=machine_learning``, and lists a search as one collapsed parent row without
metric columns. A search therefore saves a *shared view* of its trials on the experiment, the
UI's own "share view" mechanism: an experiment tag ``mlflow.sharedViewState.<key>`` holding the
runs page's state (the filter to the search's child runs, the searched params and the metric as
columns, ranked by the metric), which the UI applies when the URL names ``viewStateShareKey=
<key>``. The links go straight to the runs tab (``#/experiments/<id>/runs``): the bare
experiment route redirects and drops the key.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from urllib.parse import urlencode

from tuneforge.schema import Tags

__all__ = ["DEFAULT_UI", "SHARED_VIEW_TAG", "run_url", "trials_url", "trials_view", "ui_url", "view_key"]

DEFAULT_UI = "http://127.0.0.1:5000"
"""Where ``tuneforge server`` serves the UI by default (a SQLite or PostgreSQL store has no UI of
its own)."""
SHARED_VIEW_TAG = "mlflow.sharedViewState."
"""MLflow's prefix of an experiment tag holding a shared view; the view's key follows."""
_MACHINE_LEARNING = "machine_learning"


def ui_url(tracking_uri: str, ui: str | None = None) -> str:
    """The UI's address: ``ui`` when given, the tracking server's own (an http(s) store), else
    :data:`DEFAULT_UI` (``tuneforge server`` on the store)."""
    if ui:
        return ui.rstrip("/")
    return tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://")) else DEFAULT_UI


def view_key(parent_run_id: str) -> str:
    """The shared view's key of the search whose parent run is ``parent_run_id``."""
    return f"tuneforge-{parent_run_id}"


def trials_view(parent_run_id: str, search_name: str, metric: str, mode: str,
                params: Sequence[str]) -> tuple[str, str]:
    """The experiment tag (name, value) of a search's shared view: its trials (the parent's
    child runs), the searched ``params`` and ``metric`` as columns, best first; every trial
    drawn in the charts. The value is MLflow's saved-view envelope, so the view is also listed
    by name in the UI."""
    state = {"searchFilter": f"tags.`{Tags.PARENT_RUN_ID}` = '{parent_run_id}'",
             "orderByKey": _column("metrics", metric), "orderByAsc": mode == "min",
             "startTime": "ALL", "lifecycleFilter": "Active", "modelVersionFilter": "All Runs",
             "datasetsFilter": [],
             "selectedColumns": [_column("metrics", metric), *(_column("params", p) for p in params)],
             "runsHiddenMode": "SHOW_ALL", "runListHidden": False, "viewMaximized": False,
             "hideEmptyCharts": True}
    now_ms = int(time.time() * 1000)
    envelope = {"name": f"tuneforge: {search_name} trials", "createdAt": now_ms, "updatedAt": now_ms,
                "state": json.dumps(state)}
    return SHARED_VIEW_TAG + view_key(parent_run_id), json.dumps(envelope)


def trials_url(ui: str, experiment_id: str, parent_run_id: str, *, charts: bool = False) -> str:
    """The runs page of the search's trials as :func:`trials_view` saved them: the table, or
    MLflow's charts comparing the same trials (``charts``)."""
    query = urlencode({"viewStateShareKey": view_key(parent_run_id),
                       "compareRunsMode": "CHART" if charts else "TABLE", "workflowType": _MACHINE_LEARNING})
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"


def run_url(ui: str, experiment_id: str, run_id: str) -> str:
    """One run's page (its description, params, metrics, artifacts), in the "Model training" view."""
    return (f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?"
            f"{urlencode({'workflowType': _MACHINE_LEARNING})}")


def _column(kind: str, name: str) -> str:
    """The UI's key of a params or metrics column: params.`lr`."""
    return f"{kind}.`{name}`"
