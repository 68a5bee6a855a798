"""A real two-node Ray cluster on this machine: a head on 127.0.0.2 and a raylet on 127.0.0.3.

Each ``ray start --block`` stays in the foreground, and stopping it stops exactly the processes
it started (``ray stop`` would also stop the tests' own local Ray). The cluster keeps its files in
a Ray temp dir of its own, removed afterwards: ``ray start --head`` writes its address to
``ray_current_cluster`` there, which only ``ray stop`` removes, and a user's plain ``ray.init()``
would otherwise join the stopped cluster (issue 9, "Found in review").

One cluster serves the module (a cluster takes tens of seconds to start and stop on 2 CPUs):
the tests that share it run first, the lost node's test last, as it loses the worker node.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import isolated_environment, parent_and_children
from tests.platform.test_cli import tuneforge
from tests.platform.test_resume import epochs_run, vit_space
from tuneforge.platform.cluster import _host_port

HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"

pytestmark = pytest.mark.own_ray
_STARTUP_TIMEOUT_S = 120


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _ray(*args: str, temp_dir: str) -> subprocess.Popen:
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_TMPDIR": temp_dir}
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


@dataclass
class TwoNodes:
    """A running head and worker node: the head's GCS address, the nodes' ``ray start``
    processes (head first) and their Ray temp dir."""

    address: str
    nodes: list[subprocess.Popen]
    temp_dir: str

    def stop(self) -> None:
        """Stop both nodes (what each ``ray start --block`` started), then any process of theirs
        that outlived them (the agents of a raylet killed by SIGKILL are orphaned), and remove
        their temp dir."""
        for process in reversed(self.nodes):
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=60)
        _kill_processes_with(f"RAY_TMPDIR={self.temp_dir}")
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _kill_processes_with(variable: str) -> None:
    """SIGKILL every process whose environment holds ``variable`` (``NAME=value``; found in /proc).
    The nodes' processes inherit their ``RAY_TMPDIR``; their command lines are retitled by Ray."""
    for folder in Path("/proc").iterdir():
        try:
            if folder.name.isdigit() and variable.encode() in (folder / "environ").read_bytes().split(b"\0"):
                os.kill(int(folder.name), signal.SIGKILL)
        except OSError:  # gone meanwhile
            continue


@contextmanager
def two_node_cluster() -> Iterator[TwoNodes]:
    """A head and a worker node, in a Ray temp dir of their own that is removed afterwards."""
    temp_dir = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths must fit in 107 bytes
    address = f"{HEAD_IP}:{_free_port(HEAD_IP)}"
    cluster = TwoNodes(address, [_ray("--head", "--node-ip-address", HEAD_IP, "--port", address.split(":")[1],
                                      "--include-dashboard", "false", temp_dir=temp_dir)], temp_dir)
    try:
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while socket.socket().connect_ex(_host_port(address)) != 0:
            assert time.monotonic() < deadline and cluster.nodes[0].poll() is None, "the head did not start"
            time.sleep(1)
        cluster.nodes.append(_ray("--address", address, "--node-ip-address", WORKER_IP, temp_dir=temp_dir))
        while _alive_nodes(address) < 2:
            assert time.monotonic() < deadline, "the worker did not join"
            time.sleep(2)
        yield cluster
    finally:
        cluster.stop()


def _address_file() -> bytes | None:
    """What a plain ``ray.init()`` on this machine reads to find a running cluster, if anything."""
    from ray._common.utils import get_ray_address_file

    path = Path(get_ray_address_file(None))
    return path.read_bytes() if path.exists() else None


@dataclass(frozen=True)
class Cluster:
    """The module's cluster, and what a plain ``ray.init()`` found on this machine before it."""

    nodes: TwoNodes
    address_file_before: bytes | None


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """Two nodes of 1 CPU each, for the whole module."""
    before = _address_file()
    with isolated_environment(), two_node_cluster() as nodes:
        yield Cluster(nodes, before)


@pytest.fixture(scope="module")
def two_nodes(cluster: Cluster) -> str:
    """The module's cluster's address, for the tests that run before its worker is lost."""
    assert all(node.poll() is None for node in cluster.nodes.nodes), (
        "the module's cluster is stopped: the lost-node tests, which stop it, must run after this one")
    return cluster.nodes.address


@dataclass(frozen=True)
class LostNode:
    """A search of 2 vit trials on the module's cluster whose worker node was lost mid-trial;
    then the cluster was stopped: what a plain ``ray.init()`` found before and after it."""

    folder: Path
    store: str
    address_file_before: bytes | None
    address_file_after: bytes | None
    on_worker: list
    returncode: int
    out: str


@pytest.fixture(scope="module")
def lost_node(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> LostNode:
    """Each node has 1 CPU: one trial runs on each; when the worker node is lost, its trial waits
    for the head's CPU. The cluster is stopped afterwards: no test can use it after this one."""
    tmp_path = tmp_path_factory.mktemp("lost-node")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    search = subprocess.Popen(
        [str(Path(sys.executable).parent / "tuneforge"), "search", str(vit_space(tmp_path)),
         "--experiment", "vit-digits", "--trials", "2", "--seed", "0", "--max-failures", "2",
         "--scheduler", "none",
         "--address", cluster.nodes.address, "--tracking-uri", store,
         "--storage", str(tmp_path / "ray_results")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 600
        on_worker = []
        while not on_worker and search.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            on_worker = [r for r in _trial_runs(store)
                         if r.data.tags.get("tuneforge.node_ip") == WORKER_IP
                         and r.info.status == "RUNNING" and 1 <= r.data.metrics.get("epoch", 0) < 6]
        if on_worker:
            _kill_raylet(WORKER_IP)  # the node is lost: its trial's process goes with its raylet
            out, _ = search.communicate(timeout=600)
        else:  # the test below fails on this
            search.kill()
            out, _ = search.communicate(timeout=60)
    finally:
        search.kill()
        cluster.nodes.stop()
    return LostNode(tmp_path, store, cluster.address_file_before, _address_file(), on_worker,
                    search.returncode, out)


def _kill_raylet(node_ip: str) -> None:
    """SIGKILL the raylet of the node at ``node_ip`` (found in /proc)."""
    raylets = []
    for folder in Path("/proc").iterdir():
        try:
            argv = (folder / "cmdline").read_bytes().split(b"\0")
        except OSError:  # not a process, or gone
            continue
        if argv[0].endswith(b"/raylet") and f"--node_ip_address={node_ip}".encode() in argv:
            raylets.append(int(folder.name))
    [pid] = raylets
    os.kill(pid, signal.SIGKILL)


def _trial_runs(store: str) -> list:
    """The search's trial runs so far (none while its driver is still creating the store)."""
    try:
        client = MlflowClient(store)
        experiment = client.get_experiment_by_name("vit-digits")
        return client.search_runs([experiment.experiment_id], "tags.`tuneforge.role` = 'trial'")
    except Exception:
        return []


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


# -- last: the worker node is lost, then the cluster stopped ----------------------------------------


@pytest.mark.timeout(900)
def test_the_cluster_leaves_nothing_a_plain_ray_init_would_join(lost_node: LostNode) -> None:
    before = lost_node.address_file_before
    assert lost_node.address_file_after == before
    if before is not None:
        return  # a cluster of the user's own runs here: ray.init() rightly joins it
    script = ("import ray; ray.init(num_cpus=1, include_dashboard=False); "
              "print(ray.cluster_resources()['CPU'])")
    environment = {name: value for name, value in os.environ.items() if name != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env=environment)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "1.0"


@pytest.mark.timeout(900)
def test_a_trial_on_a_lost_node_restarts_from_its_checkpoint_on_another(lost_node: LostNode) -> None:
    on_worker, store, tmp_path = lost_node.on_worker, lost_node.store, lost_node.folder
    assert on_worker, "no trial was seen mid-way (an epoch reported, not the last) on the worker node"
    assert lost_node.returncode == 0, lost_node.out
    client = MlflowClient(store)
    parent, children = parent_and_children(store, "vit-digits")
    assert parent.info.status == "FINISHED" and len(children) == 2
    assert all(r.info.status == "FINISHED" for r in children)
    [restarted] = [r for r in children if r.info.run_id == on_worker[0].info.run_id]
    assert restarted.data.tags["tuneforge.restarts"] == "1"
    steps = [m.step for m in client.get_metric_history(restarted.info.run_id, "val_accuracy")]
    assert sorted(steps) == [1, 2, 3, 4, 5, 6], "each epoch logged once"
    [results] = (tmp_path / "ray_results").iterdir()
    epochs = epochs_run(results, restarted.data.tags["tuneforge.trial_id"])
    assert epochs.count(1) == 1 and epochs.count(6) == 1, f"went on from its checkpoint: {epochs}"
