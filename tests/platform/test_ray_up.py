"""The user's journey on a cluster, for real: ``ray up cluster-local.yaml`` (two nodes on this
machine, over SSH), a search submitted as a Ray job, every trial in the head's MLflow server with
its artifacts, the search in the dashboard's job list, then ``ray down`` and nothing of ours left.

``ray down`` stops every Ray process on the machine: ``make test`` runs this in a pytest session
of its own. Needs sshd on 127.0.0.2/3 (scripts/ssh-loopback.sh; .ci/run runs it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import needs
from tests.platform.test_cluster import _alive_nodes

pytestmark = pytest.mark.ray_up

ROOT = Path(__file__).parents[2]
RAY = str(Path(sys.executable).parent / "ray")
KEY = Path.home() / ".ssh" / "tuneforge_local_cluster"
HEAD, DASHBOARD, MLFLOW = "127.0.0.2:6379", "http://127.0.0.1:8265", "http://127.0.0.1:5000"
SCREENSHOTS = Path(os.environ.get("TUNEFORGE_CI_ARTIFACTS", ROOT / "ci-artifacts"))
N_TRIALS = 8


def _ssh_works() -> bool:
    if not KEY.is_file():
        return False
    done = subprocess.run(["ssh", "-i", str(KEY), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                           "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5",
                           "root@127.0.0.3", "true"], capture_output=True)
    return done.returncode == 0


RAY_PROCESSES = ("raylet", "gcs_server", "tuneforge server", "ray::", "dashboard/agent.py",
                 "runtime_env/agent", "log_monitor.py", "autoscaler/_private/monitor.py")
"""What a Ray node or our server runs: a process of an earlier local Ray that outlived its driver
(an agent, a worker) can hold a port or a file the new nodes need."""


def _ours_running() -> list[str]:
    """The command lines of the Ray and tuneforge server processes alive here (zombies, which
    hold nothing, left out)."""
    done = subprocess.run(["ps", "-eo", "stat=,args="], capture_output=True, text=True)
    return [args for stat, _, args in (line.strip().partition(" ") for line in done.stdout.splitlines())
            if not stat.startswith("Z") and any(name in args for name in RAY_PROCESSES)]


def _forget_stale_cluster_state() -> None:
    """Remove the local provider's record of an earlier ``tuneforge-local`` cluster. With no Ray
    process running it can only be stale, and a worker it records as running and up to date is
    never set up again: its raylet never starts and the worker never joins."""
    from ray.autoscaler._private.local.config import get_state_path

    Path(get_state_path("tuneforge-local")).unlink(missing_ok=True)


def _worker_diagnostics() -> str:
    """The head's autoscaler logs (the worker's set-up and ``ray start`` output is in them) and
    the local provider's state: what to read when the worker does not join."""
    from ray.autoscaler._private.local.config import get_state_path

    logs = Path("/tmp/ray/session_latest/logs")
    parts = []
    for path in [Path(get_state_path("tuneforge-local")), *sorted(logs.glob("monitor*"))]:
        text = path.read_text(errors="replace") if path.is_file() else "(missing)"
        parts.append(f"--- {path} (last 80 lines)\n" + "\n".join(text.splitlines()[-80:]))
    return "\n".join(parts)


def _until(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(2)
    return result


def _dashboard(path: str, token: str | None) -> object:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"{DASHBOARD}{path}", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _finished_children(client: MlflowClient, experiment: str) -> list:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    runs = client.search_runs([found.experiment_id], "tags.`tuneforge.role` = 'trial'")
    return [r for r in runs if r.info.status == "FINISHED"]


@pytest.mark.timeout(1800)
def test_ray_up_a_search_on_two_nodes_then_ray_down() -> None:
    needs(_ssh_works(), "sshd on 127.0.0.2/3 with ~/.ssh/tuneforge_local_cluster (scripts/ssh-loopback.sh)")
    running = _ours_running()
    assert not running, f"a Ray or tuneforge server already runs here; `ray down` would stop it: {running}"
    _forget_stale_cluster_state()
    env = {**os.environ, "RAY_UP_enable_autoscaler_v2": "0", "RAY_AUTH_MODE": "token"}
    experiment, timings, started = f"ray-up-{uuid.uuid4().hex[:8]}", {}, time.monotonic()
    up = subprocess.run([RAY, "up", "-y", "cluster-local.yaml"], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=1200)
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        try:
            _until(lambda: _alive_nodes(HEAD) == 2, 600, "the worker node")
        except AssertionError as late:
            raise AssertionError(f"{late}\n{_worker_diagnostics()}") from None
        client = MlflowClient(MLFLOW)
        _until(lambda: client.search_experiments() is not None, 120, "the head's MLflow server")
        timings["ray_up_s"] = time.monotonic() - started

        submission = f"tuneforge-{experiment}"
        submit = subprocess.run(
            [RAY, "job", "submit", "--address", DASHBOARD, "--submission-id", submission, "--no-wait", "--",
             "tuneforge", "search", "rf-digits", "--trials", str(N_TRIALS), "--seed", "3",
             "--experiment", experiment, "--tracking-uri", MLFLOW, "--storage", "~/tuneforge/ray_results"],
            env=env, capture_output=True, text=True, timeout=120)
        assert submit.returncode == 0, submit.stderr
        _until(lambda: _finished_children(client, experiment), 600, "the first finished trial")
        timings["first_trial_s"] = time.monotonic() - started

        token = (Path.home() / ".ray" / "auth_token").read_text().strip()
        job = _until(lambda: (j := _dashboard(f"/api/jobs/{submission}", token))["status"] in
                     ("SUCCEEDED", "FAILED", "STOPPED") and j, 900, "the search's end")
        assert job["status"] == "SUCCEEDED", job
        listed = {j.get("submission_id"): j for j in _dashboard("/api/jobs/", token)}
        assert listed[submission]["entrypoint"].startswith("tuneforge search rf-digits")
        with pytest.raises(urllib.error.HTTPError) as refused:
            _dashboard("/api/jobs/", None)
        assert refused.value.code == 401  # token authentication stayed on

        children = _finished_children(client, experiment)
        assert len(children) == N_TRIALS
        assert {r.data.tags["tuneforge.node_ip"] for r in children} == {"127.0.0.2", "127.0.0.3"}
        [parent] = client.search_runs([client.get_experiment_by_name(experiment).experiment_id],
                                      "tags.`tuneforge.role` = 'search'")
        for child in children:
            assert "cv_accuracy" in child.data.metrics
            # The best trial's run also holds the best config refitted on all the data.
            is_best = child.info.run_id == parent.data.tags["tuneforge.best_run_id"]
            assert [a.path for a in client.list_artifacts(child.info.run_id)] == \
                   ["cv_report.json", *(["model"] if is_best else [])]
    finally:
        down_started = time.monotonic()
        down = subprocess.run([RAY, "down", "-y", "cluster-local.yaml"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
        timings["ray_down_s"] = time.monotonic() - down_started
    assert down.returncode == 0, down.stderr[-3000:]
    _until(lambda: not _ours_running(), 120, "every raylet, GCS and tuneforge server to stop")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / "ray-up-timings.json").write_text(json.dumps(timings, indent=2))
    print(f"\nray up -> first trial -> ray down: {json.dumps(timings)}")
