"""``tuneforge server``: the MLflow UI, API and artifacts on the store, bound to loopback; beyond
it, behind MLflow's basic auth."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import free_port, isolated_environment, parent_and_children, wait_for_http
from tests.platform.test_cli import tuneforge
from tuneforge.errors import ConfigError
from tuneforge.platform.tracking import check_tracking_uri

pytestmark = pytest.mark.own_ray  # servers and searches are processes of their own, with their own Ray


def start_server(folder: Path, *args: str, **env: str) -> tuple[str, subprocess.Popen]:
    """``tuneforge server`` in ``folder``, which is also its TUNEFORGE_HOME: the default store, its
    artifacts and the basic-auth database are made there."""
    port = free_port()
    process = subprocess.Popen([str(Path(sys.executable).parent / "tuneforge"), "server", "--port", str(port),
                                "--workers", "1", *args], cwd=folder,
                               env={**os.environ, "TUNEFORGE_HOME": str(folder), **env},
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/health", process)
    return url, process


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=60)


@dataclass(frozen=True)
class Served:
    """A server on loopback, the folder it serves from, and the search recorded through it."""

    url: str
    folder: Path
    token: str
    search: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server on loopback for the module, in a folder of its own, and one search recorded
    through it (``tuneforge search ridge-diabetes --trials 3 --seed 1`` with a Ray token of its
    own): starting a server and a search takes tens of seconds, and the tests below only read them."""
    folder, token = tmp_path_factory.mktemp("server"), secrets.token_hex(32)
    with isolated_environment():
        url, process = start_server(folder)
        try:
            search = tuneforge("search", "ridge-diabetes", "--trials", "3", "--seed", "1",
                               "--tracking-uri", url, cwd=folder, RAY_AUTH_TOKEN=token)
        except BaseException:
            stop_server(process)
            raise
    try:
        yield Served(url, folder, token, search)
    finally:
        stop_server(process)


def test_search_through_the_server_records_runs_and_serves_artifacts(served: Served, tmp_path: Path) -> None:
    server, done = served.url, served.search
    assert done.returncode == 0, done.stderr
    assert f"MLflow UI, the trials ranked: {server}/#/experiments/" in done.stdout
    assert "workflowType=machine_learning" in done.stdout
    client = MlflowClient(server)
    _, children = parent_and_children(server, "ridge-diabetes")
    assert len(children) == 3
    for child in children:
        assert child.info.artifact_uri.startswith("mlflow-artifacts:")
        report = client.download_artifacts(child.info.run_id, "cv_report.json", str(tmp_path))
        assert "Ridge" in json.loads(Path(report).read_text())["estimator"]
    # The store is the default one ($TUNEFORGE_HOME/mlflow.db), its artifacts in mlartifacts/ beside it.
    folder = served.folder
    assert (folder / "mlflow.db").is_file() and any((folder / "mlartifacts").rglob("cv_report.json"))


def test_the_server_answers_only_on_loopback_and_to_its_own_host_names(served: Served) -> None:
    server = served.url
    port = int(server.rsplit(":", 1)[1])
    api = f"{server}/api/2.0/mlflow/experiments/search?max_results=1"
    with urllib.request.urlopen(urllib.request.Request(api, headers={"Host": f"localhost:{port}"})) as ok:
        assert ok.status == 200
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(api, headers={"Host": "attacker.example"}))
    assert refused.value.code == 403
    external = [ip for ip in socket.gethostbyname_ex(socket.gethostname())[2] if not ip.startswith("127.")]
    for ip in external:
        with socket.socket() as probe:
            probe.settimeout(2)
            assert probe.connect_ex((ip, port)) != 0, f"the server answers on {ip}"


def test_a_server_is_not_a_backend_store(tmp_path: Path) -> None:
    done = tuneforge("server", "--tracking-uri", "http://127.0.0.1:1", cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("error: --tracking-uri: 'http://127.0.0.1:1' is not a database")


def test_an_unreachable_tracking_server_fails_fast(tmp_path: Path) -> None:
    done = tuneforge("search", "ridge-diabetes", "--tracking-uri", f"http://127.0.0.1:{free_port()}",
                     cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("error: --tracking-uri: no MLflow server answers at http://127.0.0.1:")
    assert list(tmp_path.iterdir()) == []


def test_the_ray_token_is_never_printed(served: Served) -> None:
    """The module's search through the server ran with ``RAY_AUTH_TOKEN`` set to a token of its own."""
    token, done = served.token, served.search
    assert done.returncode == 0, done.stderr
    assert token not in done.stdout + done.stderr
    assert "ray get-auth-token" in done.stdout  # how to authenticate to the dashboard, instead


def _experiments_search(url: str, credentials: tuple[str, str] | None = None) -> int:
    """The status of one experiments-search request, with basic-auth ``credentials`` or none."""
    request = urllib.request.Request(f"{url}/api/2.0/mlflow/experiments/search?max_results=1")
    if credentials:
        token = base64.b64encode(":".join(credentials).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as refused:
        return refused.code


def _command_lines() -> dict[int, tuple[int, bytes]]:
    """Every process's parent pid and command line (``ps -eo ppid,args``), by pid."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            found[int(stat.parent.name)] = (parent, (stat.parent / "cmdline").read_bytes())
        except (OSError, IndexError, ValueError):
            continue  # the process ended meanwhile
    return found


def _descendants(pid: int, processes: dict[int, tuple[int, bytes]]) -> list[int]:
    children = [child for child, (parent, _) in processes.items() if parent == pid]
    return children + [grandchild for child in children for grandchild in _descendants(child, processes)]


def test_beyond_loopback_every_request_needs_the_admin_password(tmp_path: Path) -> None:
    password = secrets.token_urlsafe(24)
    url, process = start_server(tmp_path, "--host", "0.0.0.0", TUNEFORGE_SERVER_PASSWORD=password)
    try:
        assert _experiments_search(url) == 401
        assert _experiments_search(url, ("admin", password)) == 200
        assert _experiments_search(url, ("admin", password[::-1])) == 401
        # A search given this server is refused at once, in one line, without credentials.
        with pytest.raises(ConfigError, match=re.escape("refused a request without credentials (HTTP 401); "
                                                        "set MLFLOW_TRACKING_USERNAME")):
            check_tracking_uri(url)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
            patch.setenv("MLFLOW_TRACKING_PASSWORD", password)
            check_tracking_uri(url)
        processes = _command_lines()
        tree = [process.pid, *_descendants(process.pid, processes)]
        assert len(tree) >= 2, "the server runs its workers as child processes"
        assert not [pid for pid, (_, cmdline) in processes.items() if password.encode() in cmdline], (
            "the password is on a command line, which ps shows to every user")
    finally:
        stop_server(process)
    assert "basic auth: user admin" in process.stdout.read()
    ini = tmp_path / "basic_auth.ini"
    assert (tmp_path / "basic_auth.db").is_file() and ini.stat().st_mode & 0o777 == 0o600
    assert password not in ini.read_text()
    # MLflow uses the password only to create the admin: another one is refused, not ignored.
    again = tuneforge("server", "--host", "0.0.0.0", "--port", str(free_port()), cwd=tmp_path, timeout=60,
                      TUNEFORGE_HOME=str(tmp_path), TUNEFORGE_SERVER_PASSWORD=secrets.token_urlsafe(24))
    assert again.returncode == 2
    assert again.stderr.startswith("error: TUNEFORGE_SERVER_PASSWORD: not the password of user 'admin'")


def test_beyond_loopback_without_a_password_or_a_terminal_the_server_is_refused(tmp_path: Path) -> None:
    environment = {key: value for key, value in os.environ.items() if key != "TUNEFORGE_SERVER_PASSWORD"}
    done = subprocess.run([str(Path(sys.executable).parent / "tuneforge"), "server", "--host", "0.0.0.0"],
                          cwd=tmp_path, env=environment, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("error: --host: serving beyond loopback needs an admin password; set "
                                  "TUNEFORGE_SERVER_PASSWORD") and done.stderr.count("\n") == 1
    short = tuneforge("server", "--host", "0.0.0.0", cwd=tmp_path, timeout=60,
                      TUNEFORGE_SERVER_PASSWORD="too-short")
    assert short.returncode == 2
    assert short.stderr == ("error: TUNEFORGE_SERVER_PASSWORD: MLflow needs a password of at least 12 "
                            "characters, got 9\n")
    assert list(tmp_path.iterdir()) == []


def test_insecure_serves_beyond_loopback_without_auth_and_says_so(tmp_path: Path) -> None:
    url, process = start_server(tmp_path, "--host", "0.0.0.0", "--insecure")
    try:
        assert _experiments_search(url) == 200
    finally:
        stop_server(process)
    output = process.stdout.read()
    assert "warning: --insecure: no authentication; anyone who reaches 0.0.0.0:" in output
    assert "basic auth" not in output and not (tmp_path / "basic_auth.db").exists()
