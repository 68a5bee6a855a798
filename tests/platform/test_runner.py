"""Real searches on a local Ray, recorded in a real MLflow store."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import pandas as pd
import pytest

import tuneforge
from tests.conftest import gathering_space, parent_and_children, write_space
from tuneforge.platform.events import TrialEnded
from tuneforge.platform.progress import format_value

RIDGE_GRID = """\
trainable: sklearn
metric: cv_r2
mode: max
config: {estimator: sklearn.linear_model.Ridge, dataset: diabetes, cv: 3}
params:
  alpha: {type: float, low: 0.01, high: 10.0, log: true, grid: [0.01, 1.0, 10.0]}
  fit_intercept: {type: categorical, choices: [true, false]}
"""


def _artifact_text(tracking_uri: str, run_id: str, path: str) -> str:
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.artifacts.load_text(f"runs:/{run_id}/{path}")


def test_random_search_records_a_parent_and_a_child_per_trial(ray_local, tracking_uri, tmp_path) -> None:
    events = []
    result = tuneforge.search("ridge-diabetes", algo="random", trials=6, seed=3,
                              tracking_uri=tracking_uri, storage=tmp_path / "ray", on_event=events.append)
    parent, children = parent_and_children(tracking_uri, "ridge-diabetes")
    assert result.status == "FINISHED" and len(result.trials) == 6
    assert parent.info.run_id == result.parent_run_id and parent.info.status == "FINISHED"
    assert {k: parent.data.params[k] for k in ("algo", "seed", "n_trials", "metric")} == \
           {"algo": "random", "seed": "3", "n_trials": "6", "metric": "cv_neg_rmse"}

    assert len(children) == 6
    for child in children:
        assert child.info.status == "FINISHED"
        assert set(child.data.params) == {"alpha", "fit_intercept"}
        assert {"cv_neg_rmse", "cv_neg_rmse_std", "fit_time_s", "score_time_s"} <= set(child.data.metrics)
        assert child.data.tags["tuneforge.trial_id"] in {t.trial_id for t in result.trials}
        assert child.info.artifact_uri.startswith((tmp_path / "mlruns").as_uri())
        report = json.loads(_artifact_text(tracking_uri, child.info.run_id, "cv_report.json"))
        assert len(report["folds"]["test_neg_rmse"]) == 5

    best_child = max(children, key=lambda r: r.data.metrics["cv_neg_rmse"])
    assert result.best_score == best_child.data.metrics["cv_neg_rmse"]
    assert parent.data.metrics["best_cv_neg_rmse"] == result.best_score
    assert parent.data.tags["tuneforge.best_run_id"] == best_child.info.run_id == result.best.run_id
    best_config = json.loads(_artifact_text(tracking_uri, parent.info.run_id, "best_config.json"))
    assert best_config == result.best_config
    assert str(best_config["alpha"]) == best_child.data.params["alpha"]
    table = pd.read_csv(io.StringIO(_artifact_text(tracking_uri, parent.info.run_id, "results.csv")))
    assert len(table) == 6 and set(table["status"]) == {"FINISHED"}
    assert "trainable: sklearn" in _artifact_text(tracking_uri, parent.info.run_id, "space.yaml")
    note = parent.data.tags["mlflow.note.content"]  # the run page's description
    assert note.startswith("**ridge-diabetes**, random search: FINISHED, 6 trials (0 stopped early, "
                           "0 failed).")
    assert f"**Best cv_neg_rmse: {format_value(result.best_score)}**, trial {result.best.trial_id} (" in note
    assert f"Best model: `{result.model_uri}`." in note and "--smoke" not in note

    kinds = [type(e).__name__ for e in events]
    n_stages = kinds.index("SearchStarted")
    assert n_stages == 4 and set(kinds[:n_stages]) == {"Stage"}, "start-up stages come first"
    assert sorted(kinds[n_stages + 1:-1]) == ["TrialEnded"] * 6 + ["TrialResult"] * 6 + ["TrialStarted"] * 6
    assert events[-1].text == "writing the report (report/index.html of the parent run)"
    report = _artifact_text(tracking_uri, parent.info.run_id, "report/index.html")
    assert report.count("<h2>Search ") == 1 and "class='plot'" in report
    ended = [e for e in events if isinstance(e, TrialEnded)]
    assert [e.n_ended for e in ended] == [1, 2, 3, 4, 5, 6] and all(e.n_trials == 6 for e in ended)
    assert ended[-1].best_score == result.best_score


def test_grid_search_runs_every_combination_once(ray_local, tracking_uri, tmp_path) -> None:
    space = write_space(tmp_path, RIDGE_GRID)
    result = tuneforge.search(space, algo="grid", tracking_uri=tracking_uri, storage=tmp_path / "ray",
                              experiment="grid")
    configs = sorted((t.params["alpha"], t.params["fit_intercept"]) for t in result.trials)
    assert configs == sorted((a, b) for a in (0.01, 1.0, 10.0) for b in (True, False))
    _, children = parent_and_children(tracking_uri, "grid")
    assert len(children) == 6


def test_grid_repeats_with_trials(ray_local, tracking_uri, tmp_path) -> None:
    space = write_space(tmp_path, RIDGE_GRID)
    result = tuneforge.search(space, algo="grid", trials=2, tracking_uri=tracking_uri,
                              storage=tmp_path / "ray")
    assert len(result.trials) == 12


def test_same_seed_gives_the_same_configs(ray_local, tracking_uri, tmp_path) -> None:
    def configs(seed: int) -> list:
        result = tuneforge.search("svc-wine", trials=5, seed=seed, tracking_uri=tracking_uri,
                                  storage=tmp_path / "ray", max_concurrent=1)
        return [t.params for t in sorted(result.trials, key=lambda t: t.trial_id[-5:])]

    first = configs(11)
    assert configs(11) == first
    assert configs(12) != first


def _overlaps(trials) -> int:
    intervals = sorted((t.started_at, t.ended_at) for t in trials)
    return sum(later[0] < earlier[1] for earlier, later in itertools.pairwise(intervals))


def test_max_concurrent_is_honoured(ray_local, tracking_uri, tmp_path) -> None:
    """Two trials that wait (2 s at most) to meet each other, one at a time: neither meets."""
    one_at_a_time = tuneforge.search(gathering_space(tmp_path, 2, wait_s=2), trials=2, seed=1,
                                     max_concurrent=1, tracking_uri=tracking_uri, storage=tmp_path / "ray")
    assert [t.metrics["met"] for t in one_at_a_time.trials] == [0.0, 0.0]
    assert _overlaps(one_at_a_time.trials) == 0


def test_trials_run_at_once_on_the_cpus_ray_has(ray_local, tracking_uri, tmp_path) -> None:
    """Two one-CPU trials on the session's 2-CPU Ray, no limit: each meets the other."""
    result = tuneforge.search(gathering_space(tmp_path, 2), trials=2, seed=1, tracking_uri=tracking_uri,
                              storage=tmp_path / "ray")
    assert [t.metrics["met"] for t in result.trials] == [1.0, 1.0]
    assert _overlaps(result.trials) == 1


def test_failed_trials_are_recorded_and_the_search_goes_on(ray_local, tracking_uri, tmp_path) -> None:
    # Ridge refuses the lbfgs solver unless positive=True: one trial of the grid fails.
    text = RIDGE_GRID.replace("fit_intercept: {type: categorical, choices: [true, false]}",
                              "solver: {type: categorical, choices: [auto, lbfgs]}")
    result = tuneforge.search(write_space(tmp_path, text), algo="grid", tracking_uri=tracking_uri,
                              storage=tmp_path / "ray", experiment="failing")
    assert result.status == "FINISHED"
    assert sorted(t.status for t in result.trials) == ["FAILED"] * 3 + ["FINISHED"] * 3
    assert result.best.params["solver"] == "auto"
    _, children = parent_and_children(tracking_uri, "failing")
    failed = [c for c in children if c.info.status == "FAILED"]
    assert len(failed) == 3
    assert all("lbfgs" in c.data.tags["tuneforge.error"] for c in failed)
    trace = _artifact_text(tracking_uri, failed[0].info.run_id, "error.txt")
    assert "raise ValueError" in trace and "\x1b[" not in trace


def test_secret_looking_params_are_masked(ray_local, tracking_uri, tmp_path) -> None:
    from tuneforge.platform._store_writer import param_value

    assert param_value("api_token", "abc123") == "***"
    assert param_value("db_password", "hunter2") == "***"
    assert param_value("alpha", 0.5) == "0.5"


@pytest.mark.parametrize("option", [{"trials": 0}, {"algo": "bayes-ish"}, {"max_concurrent": 0}])
def test_bad_options_create_nothing(tracking_uri, tmp_path, option) -> None:
    with pytest.raises(tuneforge.ConfigError):
        tuneforge.search("ridge-diabetes", tracking_uri=tracking_uri, storage=tmp_path / "ray", **option)
    assert not Path(tracking_uri.removeprefix("sqlite:///")).exists()
    assert not (tmp_path / "ray").exists()


def test_a_bayes_search_records_every_trial(ray_local, tracking_uri, tmp_path) -> None:
    result = tuneforge.search("branin", algo="bayes", trials=12, seed=1, max_concurrent=2,
                              tracking_uri=tracking_uri, storage=tmp_path / "ray")
    parent, children = parent_and_children(tracking_uri, "branin")
    assert result.status == "FINISHED" and len(children) == 12
    assert parent.data.params["algo"] == "bayes"
    assert all({"value", "regret"} <= set(c.data.metrics) for c in children)
    assert parent.data.metrics["best_value"] == min(c.data.metrics["value"] for c in children)
    assert parent.data.metrics["searcher_seconds_per_suggestion"] > 0
