"""Shared fixtures: one local Ray for the session, a fresh MLflow store per test."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose their own store and cluster: nothing leaks in from the shell."""
    for name in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray shared by the in-process searches (the runner joins a Ray already up). It
    declares two GPUs, as Ray allows on a CPU machine: how GPU scheduling is tested here."""
    import ray

    ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False,
             namespace="tuneforge-tests")
    yield ray
    ray.shutdown()


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


USER_SPACE = """\
trainable: {reference}
metric: score
mode: max
params:
  x: {{type: float, low: 0.0, high: 1.0}}
"""
"""A space for a user's trainable (``.format(reference="file.py:function")``): maximise
``score`` over ``x`` in [0, 1]."""


def parent_and_children(tracking_uri: str, experiment: str) -> tuple[Any, list[Any]]:
    """The one search (parent run) of an MLflow experiment and its trials (child runs);
    asserts that every run of the experiment is one or the other."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 1 + len(children), "every run is the parent or one of its children"
    return parent, children


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def needs(condition: bool, what: str) -> None:
    """Skip a test whose outside requirement is missing; in CI (``CI=true``), fail instead:
    .ci/run installs and starts everything the suite needs."""
    if not condition:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI lacks {what}; .ci/run should provide it")
        pytest.skip(f"needs {what} (.ci/run provides it)")


def wait_for_http(url: str, process: subprocess.Popen, timeout_s: float = 120) -> None:
    """Poll ``url`` until it answers 200; fail if ``process`` exits first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            assert process.poll() is None, f"the server exited with {process.returncode}"
            assert time.monotonic() < deadline, f"{url} did not answer"
            time.sleep(0.5)


def write_space(folder: Path, text: str, name: str = "space.yaml") -> Path:
    """Write a space file for a test and return its path."""
    path = folder / name
    path.write_text(text)
    return path
