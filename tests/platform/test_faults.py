"""Faults a search outlives: a trial that Ray's memory monitor kills is one FAILED trial with
the reason, and the search goes on. A real driver process with its own Ray, whose memory
threshold the test sets just above what the machine uses now (never the machine's memory)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import parent_and_children
from tuneforge.schema import Tags

pytestmark = pytest.mark.own_ray  # the driver is a process of its own, with its own Ray

TUNEFORGE = str(Path(sys.executable).parent / "tuneforge")

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

SPACE = """\
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
    (tmp_path / "space.yaml").write_text(SPACE)
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
