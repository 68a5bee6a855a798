"""The live status of a search, as a person reads it: counts, epochs, time left, best so far."""

from __future__ import annotations

import io

from tuneforge.platform.cluster import Cluster
from tuneforge.platform.events import RayLost, SearchStarted, Stage, TrialEnded, TrialResult, TrialStarted
from tuneforge.platform.planning import SearchOptions, plan_search
from tuneforge.platform.progress import SearchProgress
from tuneforge.platform.tracking import TrialRecord
from tuneforge.schema import TrialStatus


def _started(n_trials: int) -> SearchStarted:
    plan = plan_search("ridge-diabetes", SearchOptions(trials=n_trials, seed=5))
    cluster = Cluster(address="127.0.0.1:6379", dashboard_url=None, is_local=True,
                      node_resources=({"CPU": 2.0},), job_name="test")
    return SearchStarted(plan, cluster, "parent-run", "/tmp/ray_results/x")


def _record(trial_id: str, **metrics: float) -> TrialRecord:
    return TrialRecord(trial_id=trial_id, name=trial_id, params={"alpha": 0.5}, metrics=dict(metrics))


def test_piped_progress_prints_stages_trial_lines_and_status_lines() -> None:
    out = io.StringIO()
    progress = SearchProgress(stream=out, live=False, interval_s=3600)
    progress(Stage("starting a local Ray"))
    progress(_started(n_trials=4))
    a, b = _record("a"), _record("b")
    progress(TrialStarted(a))
    progress(TrialStarted(b))
    progress(TrialResult(a, step=1, progress=0.5))
    a.metrics["cv_neg_rmse"], a.status = -55.0, TrialStatus.FINISHED
    progress(TrialEnded(a, n_ended=1, n_trials=4, best_score=-55.0))
    b.status, b.error = TrialStatus.FAILED, "ValueError: boom"
    progress(TrialEnded(b, n_ended=2, n_trials=4, best_score=-55.0))

    lines = out.getvalue().splitlines()
    assert lines[0].endswith("starting a local Ray")
    assert "Searching ridge-diabetes (sklearn, max cv_neg_rmse) with random: 4 trials, seed 5" in lines[1]
    assert any(line.startswith("[1/4] a  cv_neg_rmse=-55  best=-55") for line in lines)
    assert any(line.startswith("[2/4] b  FAILED: ValueError: boom") for line in lines)
    status = [line for line in lines if line.startswith("  status: ")]
    assert len(status) == 3, "piped: when the first trial starts, per ended trial, every interval_s"
    assert "running 1  pending 3" in status[0]
    assert "running 0  pending 2  finished 1  stopped 0  failed 1" in status[-1]
    assert "results 1" in status[-1] and "best cv_neg_rmse=-55" in status[-1]
    assert "left" in status[-1], "half the trials ended: an estimate of the time left"


def test_a_terminal_gets_one_redrawn_line_with_a_bar() -> None:
    out = io.StringIO()
    progress = SearchProgress(stream=out, live=True)
    progress(_started(n_trials=2))
    a = _record("a")
    progress(TrialStarted(a))
    progress(TrialResult(a, step=1, progress=0.5))
    text = out.getvalue()
    last = text.rsplit("\r\x1b[K", 1)[-1]
    assert last.startswith("[#####...............]  25%  running 1  pending 1  finished 0")
    assert "\n" not in last, "the status line is redrawn in place, not printed"


def _lines(space: str, **options: object) -> list[str]:
    out = io.StringIO()
    plan = plan_search(space, SearchOptions(seed=5, **options))
    cluster = Cluster(address="127.0.0.1:6379", dashboard_url=None, is_local=True,
                      node_resources=({"CPU": 2.0},), job_name="test")
    SearchProgress(stream=out, live=False)(SearchStarted(plan, cluster, "parent-run", "/tmp/x"))
    return out.getvalue().splitlines()


def _header(space: str, **options: object) -> str:
    return _lines(space, **options)[0]


def test_a_full_size_search_says_what_it_will_cost_and_points_to_smoke() -> None:
    lines = _lines("vit-mnist", trials=8, cpus_per_trial=1)
    [cost] = [line for line in lines if line.startswith("  Cost:")]
    assert cost == ("  Cost:   about 3.5 min a trial of the default config on 2 CPUs; 8 trials, 2 at a time: "
                    "~14m00s (less where a scheduler stops trials); --smoke checks the set-up in a minute "
                    "or two")
    [budgeted] = [line for line in _lines("vit-mnist", time_budget="30m") if line.startswith("  Cost:")]
    assert "the time budget (30m00s) bounds the search" in budgeted
    assert not [line for line in _lines("vit-mnist", trials=2, smoke=True) if line.startswith("  Cost:")]
    assert not [line for line in _lines("ridge-diabetes") if line.startswith("  Cost:")], "no measured cost"


def test_the_header_names_the_scheduler_and_workers_and_no_seed_for_a_grid() -> None:
    assert _header("ridge-diabetes", algo="grid").endswith("with grid: 10 trials")
    assert _header("vit-digits", trials=8, scheduler="asha", workers_per_trial=2).endswith(
        "with random: 8 trials, seed 5, asha (grace 3, max 15 epochs), 2 workers a trial")


def test_a_lost_ray_is_said_with_the_resume_command() -> None:
    out = io.StringIO()
    progress = SearchProgress(stream=out, live=False, interval_s=3600)
    progress(RayLost("its gcs_server (pid 7, killed by SIGKILL)", "/tmp/ray_results/space-random-1"))
    assert out.getvalue() == ("this search's Ray lost its gcs_server (pid 7, killed by SIGKILL); the search "
                              "stopped, what finished is in MLflow; continue with: tuneforge resume "
                              "/tmp/ray_results/space-random-1\n")
