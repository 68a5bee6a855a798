"""Faults a search outlives, each with a real driver process and its own Ray: a trial that Ray's
memory monitor kills is one FAILED trial with the reason, and the search goes on (Ray's memory
threshold set just above what the machine uses now, never the machine's memory); a store that
stops taking writes (its SQLite file made immutable) stops the search in one line, and the
search resumes once the store takes writes again."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import needs, parent_and_children
from tests.platform.test_resume import TUNEFORGE, _folder
from tuneforge.schema import Tags

pytestmark = pytest.mark.own_ray  # the driver is a process of its own, with its own Ray

HOG = """\
import time

import numpy as np

from tuneforge.trainables import report


def train(config):
    if config["x"] > 0.5:  # grows to 6 GB, 50 MB at a time, each page touched
        hoard = []
        for _ in range(120):
            hoard.append(np.ones(50_000_000 // 8))
            time.sleep(0.05)
    report({"score": config["x"]})
"""

HOG_SPACE = """\
trainable: hog.py:train
metric: score
mode: max
params:
  x: {type: categorical, choices: [0.2, 0.9, 0.4]}
"""


def _memory_threshold(headroom_bytes: int) -> float:
    """Ray's ``memory_usage_threshold`` that lets the machine use ``headroom_bytes`` more than
    now (its used memory: MemTotal - MemAvailable, as Ray counts it)."""
    info = {line.split(":")[0]: int(line.split()[1]) * 1024
            for line in Path("/proc/meminfo").read_text().splitlines()}
    used = info["MemTotal"] - info["MemAvailable"]
    return min(0.95, (used + headroom_bytes) / info["MemTotal"])


def test_a_trial_killed_for_memory_fails_with_the_reason_and_the_search_goes_on(tmp_path: Path) -> None:
    (tmp_path / "hog.py").write_text(HOG)
    (tmp_path / "space.yaml").write_text(HOG_SPACE)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "RAY_memory_usage_threshold": f"{_memory_threshold(2 * 2**30):.4f}"}
    done = subprocess.run([TUNEFORGE, "search", "space.yaml", "--algo", "grid", "--max-concurrent", "1",
                           "--tracking-uri", store], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Search finished: 3 trials, 2 scored, 0 stopped early, 1 failed." in done.stdout
    assert "Traceback" not in done.stderr and "OutOfMemoryError" not in done.stdout + done.stderr
    parent, children = parent_and_children(store, "space")
    assert parent.info.status == "FINISHED"
    by_x = {run.data.params["x"]: run for run in children}
    assert sorted(by_x) == ["0.2", "0.4", "0.9"]
    killed = by_x["0.9"]
    assert killed.info.status == "FAILED"
    reason = killed.data.tags[Tags.ERROR]
    assert reason.startswith("killed for memory by Ray's memory monitor: Memory usage "), reason
    assert "exceeded threshold" in reason and "\n" not in reason
    assert f"FAILED: {reason}" in done.stdout
    assert all(by_x[x].info.status == "FINISHED" and by_x[x].data.metrics["score"] == float(x)
               for x in ("0.2", "0.4"))


def _reported_trials(folder: Path) -> int:
    """Trials that reported, by Ray Tune's own files (reading the SQLite store while the driver
    creates it could race its schema)."""
    return sum(path.stat().st_size > 0 for path in folder.glob("ray_results/*/*/result.json"))


def test_a_store_that_stops_taking_writes_stops_the_search_which_resumes_once_it_does(tmp_path: Path) -> None:
    needs(os.geteuid() == 0 and shutil.which("chattr") is not None, "root and chattr (a file made immutable)")
    _folder(tmp_path)  # test_resume's search: a trial a second and a half
    database = tmp_path / "mlflow.db"
    store = f"sqlite:///{database}"
    process = subprocess.Popen([TUNEFORGE, "search", "space.yaml", "--trials", "12", "--seed", "1",
                                "--tracking-uri", store], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while _reported_trials(tmp_path) < 3 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        subprocess.run(["chattr", "+i", str(database)], check=True)  # SQLite: "disk I/O error" from now on
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
        subprocess.run(["chattr", "-i", str(database)], check=False)
    assert process.returncode == 1, out + err
    folder = next((tmp_path / "ray_results").iterdir())
    assert err.count("\n") == 1, err
    assert err.startswith(f"error: the MLflow store {store} stopped taking writes (MlflowException: "), err
    assert err.rstrip().endswith(f"continue with: tuneforge resume {folder}"), err
    assert "Traceback" not in out + err
    assert "Search finished" not in out, "no summary of a search the store did not record"
    shown = re.findall(r"^\[ *\d+/12\] (\S+) ", out, flags=re.MULTILINE)
    assert len(shown) >= 3, out
    _, recorded = parent_and_children(store, "space")
    finished = {run.data.tags[Tags.TRIAL_ID] for run in recorded if run.info.status == "FINISHED"}
    assert set(shown) <= finished, "a trial shown as scored is recorded as such"

    resumed = subprocess.run([TUNEFORGE, "resume", str(folder)], cwd=tmp_path, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Search finished: 12 trials, 12 scored" in resumed.stdout
    parent, children = parent_and_children(store, "space")
    assert parent.info.status == "FINISHED" and len(children) == 12
    assert len({run.data.tags[Tags.TRIAL_ID] for run in children}) == 12
    assert all(run.info.status == "FINISHED" and "score" in run.data.metrics for run in children)
