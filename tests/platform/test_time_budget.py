"""``--time-budget``: a search ends when its time is spent, its running trials recorded STOPPED,
and a search resumed after its driver died gets only what was left. Real drivers (the console
script), each with its own Ray, and a real MLflow store; ``parse_duration`` and the stopper
itself in-process.

Timings here are behaviour, not benchmarks: a bound is the budget on one side and the budget
plus a wide slack on the other (Ray stopping its trials and MLflow closing the runs take a
second or two here; the slack is 15 s).
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import USER_SPACE, parent_and_children, write_space
from tests.platform.test_resume import SAVE_EVERY_SECOND, TUNEFORGE, _results_folder, _store, _trial_runs
from tuneforge._checks import parse_duration
from tuneforge.errors import ConfigError
from tuneforge.platform.budget import USED_KEY, TimeBudget, live_budget
from tuneforge.schema import Tags, TrialStatus

SLACK_S = 15.0
"""What a search may run past its budget: Ray stopping the trials, MLflow closing the runs."""

SLOW = """\
import time

from tuneforge.trainables import report


def train(config):
    # Reports every second for far longer than any budget here: only the budget ends it.
    for step in range(1, 10_000):
        time.sleep(1.0)
        report({"score": config["x"] * step})
"""


def _folder(tmp_path: Path) -> Path:
    """The slow trainable and its space (experiment ``space``) in ``tmp_path``."""
    write_space(tmp_path, SLOW, "slow.py")
    write_space(tmp_path, USER_SPACE.format(reference="slow.py:train"))
    return tmp_path


def _search_args(tmp_path: Path, budget: str) -> list[str]:
    return [TUNEFORGE, "search", str(tmp_path / "space.yaml"), "--time-budget", budget, "--seed", "1",
            "--tracking-uri", _store(tmp_path), "--storage", str(tmp_path / "ray_results")]


def _time_used(tmp_path: Path) -> float:
    """The budget spent, as the search's ``search.json`` holds it."""
    return json.loads((_results_folder(tmp_path) / "search.json").read_text())[USED_KEY]


def _check_stopped_by_the_budget(tmp_path: Path) -> tuple:
    """The search ended FINISHED because its budget was spent; each trial, running then, was
    recorded STOPPED at the number of results it reported. The parent run and the trials."""
    parent, children = parent_and_children(_store(tmp_path), "space")
    assert parent.info.status == "FINISHED"
    assert parent.data.tags[Tags.TIME_BUDGET_SPENT] == "true"
    assert parent.data.params["time_budget_s"] in ("20.0", "40.0")
    assert children, "the budget is long enough for trials to start"
    client = MlflowClient(_store(tmp_path))
    for child in children:
        assert child.data.tags[Tags.STATUS] == TrialStatus.STOPPED.value, child.data.tags
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "score")]
        assert steps and child.data.tags[Tags.STOPPED_AT] == str(max(steps))
    assert parent.data.metrics["n_trials_stopped"] == len(children)
    return parent, children


@pytest.mark.own_ray  # the search is a driver process of its own, with its own Ray
def test_a_time_budget_ends_the_search_and_stops_its_running_trials(tmp_path: Path) -> None:
    _folder(tmp_path)
    done = subprocess.run(_search_args(tmp_path, "20s"), cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    parent, children = _check_stopped_by_the_budget(tmp_path)
    client = MlflowClient(_store(tmp_path))
    for child in children:  # every result it reported was logged, the last at its stop
        n_results = len(client.get_metric_history(child.info.run_id, "score"))
        assert n_results == int(child.data.tags[Tags.STOPPED_AT])
    first_start_s = min(child.info.start_time for child in children) / 1000
    ran_s = parent.info.end_time / 1000 - first_start_s
    assert 20 <= ran_s <= 20 + SLACK_S, f"{ran_s:.1f} s from the first trial's start to the search's end"
    assert _time_used(tmp_path) >= 20
    n = len(children)
    assert f"Search finished: {n} trials, {n} scored, {n} stopped early, 0 failed." in done.stdout


def _kill_after_first_trial(process: subprocess.Popen, tmp_path: Path, after_s: float) -> None:
    """SIGKILL the driver's process group (the driver and the Ray it started) ``after_s``
    seconds after its first trial started (its MLflow run's start)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        starts = [run.info.start_time / 1000 for run in _trial_runs(tmp_path)]
        if starts and time.time() >= min(starts) + after_s:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
            return
        time.sleep(0.2)
    raise AssertionError(f"the search never ran a trial for {after_s} s (exit {process.poll()})")


def _resume_timed(tmp_path: Path) -> tuple[int, str, float]:
    """``tuneforge resume RESULTS_FOLDER``: its exit code, its output, and the seconds from its
    header (printed when its trial loop starts) to the search's end: the line that starts its
    report, which it writes after the search closed (seconds more for plotly)."""
    process = subprocess.Popen([TUNEFORGE, "resume", str(_results_folder(tmp_path)), "--tracking-uri",
                                _store(tmp_path)], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines, started, ended = [], None, None
    try:
        for line in process.stdout:
            lines.append(line)
            if started is None and line.startswith("Searching "):
                started = time.monotonic()
            if ended is None and "writing the report" in line:
                ended = time.monotonic()
        process.wait(timeout=300)
    finally:
        process.kill()
    assert started is not None and ended is not None, "".join(lines)
    return process.returncode, "".join(lines), ended - started


@pytest.mark.own_ray  # the driver is a process of its own, killed with its Ray, and resumed
@pytest.mark.full  # two drivers and a 40 s budget: a minute and a half; make test: the 20 s budget above
def test_a_search_resumed_after_sigkill_gets_what_was_left_of_its_budget(tmp_path: Path) -> None:
    _folder(tmp_path)
    with open(tmp_path / "first.out", "w") as out:
        process = subprocess.Popen(_search_args(tmp_path, "40s"), cwd=tmp_path, stdout=out,
                                   stderr=subprocess.STDOUT, env=SAVE_EVERY_SECOND, start_new_session=True)
        try:
            _kill_after_first_trial(process, tmp_path, 15)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL
    used_before = _time_used(tmp_path)
    assert 5 <= used_before < 40, "the killed driver wrote what it had used (every 5 s)"

    code, output, resumed_s = _resume_timed(tmp_path)
    assert code == 0, output
    left_s = 40 - used_before
    assert left_s - 1 <= resumed_s <= left_s + SLACK_S, f"ran {resumed_s:.1f} s of {left_s:.1f} s left"
    assert resumed_s < 40 - 5, "a resumed search does not get the whole budget again"
    assert 40 <= _time_used(tmp_path) < 40 + SLACK_S
    parent, _ = _check_stopped_by_the_budget(tmp_path)
    assert parent.data.tags["tuneforge.resumes"] == "1"


# -- the stopper and the durations, in-process ----------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90.0), ("45m", 2700.0), ("2h", 7200.0), ("600", 600.0),
                                               ("1.5h", 5400.0), (" 90S ", 90.0), ("30", 30.0)])
def test_durations_are_read_in_seconds(text: str, seconds: float) -> None:
    assert parse_duration("--time-budget", text) == seconds


@pytest.mark.parametrize("text", ["10q", "0s", "-1m", "", "inf", "1e3", "h", "0"])
def test_bad_durations_are_refused_with_one_line(text: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_duration("--time-budget", text)
    assert str(refused.value) == (f"--time-budget: expected a duration above 0 like 90s, 45m or 2h, "
                                  f"got {text!r}")


def test_the_budget_counts_what_earlier_drivers_used_and_survives_tune_s_pickling(tmp_path: Path) -> None:
    record = write_space(tmp_path, json.dumps({"name": "s"}), "search.json")
    budget = TimeBudget("test-budget-s", 30.0, used=29.9, record=record)
    time.sleep(0.2)
    assert budget.stop_all() is False and not budget.spent, "its clock starts with the first trial"
    budget.start()
    assert budget.stop_all() is False and not budget.spent
    time.sleep(0.2)
    assert budget.stop_all() is True and budget.spent and budget.left == 0.0
    budget.save()
    saved = json.loads(record.read_text())
    assert saved["name"] == "s" and saved[USED_KEY] >= 30.0
    assert pickle.loads(pickle.dumps(budget)) is budget, "a restored Tuner's stopper is this driver's"
    unknown = live_budget("a search this driver did not plan")  # resumed without a budget
    assert unknown.seconds == float("inf") and unknown.stop_all() is False
