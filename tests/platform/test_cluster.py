"""A real two-node Ray cluster on this machine: a head on 127.0.0.2 and a raylet on 127.0.0.3.

Each ``ray start --block`` stays in the foreground, and stopping it stops exactly the processes
it started (``ray stop`` would also stop the tests' own local Ray).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import parent_and_children
from tests.platform.test_cli import tuneforge
from tuneforge.platform.cluster import _host_port

HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"
_STARTUP_TIMEOUT_S = 120


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _ray(*args: str) -> subprocess.Popen:
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    return subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--block", *args,
                             "--num-cpus", "1", "--disable-usage-stats"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def _alive_nodes(address: str) -> int:
    script = (f"import ray; ray.init(address={address!r}, logging_level='ERROR', log_to_driver=False); "
              "print('alive nodes:', sum(n['Alive'] for n in ray.nodes()))")
    # Ray may print autoscaler events ("Resized to 1 CPUs") on the same stdout.
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "RAY_AUTH_MODE": "token", "RAY_SCHEDULER_EVENTS": "0"})
    found = re.search(r"^alive nodes: (\d+)$", done.stdout, re.MULTILINE)
    return int(found.group(1)) if found else 0


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[str]:
    address = f"{HEAD_IP}:{_free_port(HEAD_IP)}"
    head = _ray("--head", "--node-ip-address", HEAD_IP, "--port", address.split(":")[1],
                "--include-dashboard", "false")
    processes = [head]
    try:
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while socket.socket().connect_ex(_host_port(address)) != 0:
            assert time.monotonic() < deadline and head.poll() is None, "the head did not start"
            time.sleep(1)
        processes.append(_ray("--address", address, "--node-ip-address", WORKER_IP))
        while _alive_nodes(address) < 2:
            assert time.monotonic() < deadline, "the worker did not join"
            time.sleep(2)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=60)


@pytest.mark.timeout(600)
def test_search_runs_trials_on_both_nodes_and_records_them_all(two_nodes: str, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = tuneforge("search", "rf-digits", "--trials", "8", "--seed", "2", "--address", two_nodes,
                     "--tracking-uri", store, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"Ray cluster {two_nodes}, 2 node(s), 2 CPUs" in done.stdout
    client = MlflowClient(store)
    parent, children = parent_and_children(store, "rf-digits")
    assert len(children) == 8
    assert all(r.info.status == "FINISHED" and "cv_accuracy" in r.data.metrics for r in children)
    assert {r.data.tags["tuneforge.node_ip"] for r in children} == {HEAD_IP, WORKER_IP}
    # Artifacts came to the driver through Ray, from both nodes; the best trial's run also holds
    # the best config refitted on all the data.
    best = parent.data.tags["tuneforge.best_run_id"]
    assert all([a.path for a in client.list_artifacts(r.info.run_id)] ==
               ["cv_report.json", *(["model"] if r.info.run_id == best else [])] for r in children)


def test_a_wrong_token_is_refused_at_once(two_nodes: str, tmp_path: Path) -> None:
    done = tuneforge("search", "ridge-diabetes", "--address", two_nodes, cwd=tmp_path, timeout=120,
                     RAY_AUTH_TOKEN="not-the-cluster-token")
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: --address: the Ray cluster at {two_nodes} rejected")
    assert "Traceback" not in done.stderr and list(tmp_path.iterdir()) == []
