"""``tuneforge server``: the MLflow UI, API and artifacts on the store, bound to loopback."""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import free_port, parent_and_children, wait_for_http
from tests.platform.test_cli import tuneforge


def start_server(folder: Path, *args: str) -> tuple[str, subprocess.Popen]:
    port = free_port()
    process = subprocess.Popen([str(Path(sys.executable).parent / "tuneforge"), "server", "--port", str(port),
                                "--workers", "1", *args], cwd=folder,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/health", process)
    return url, process


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=60)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    url, process = start_server(tmp_path)
    yield url
    stop_server(process)


def test_search_through_the_server_records_runs_and_serves_artifacts(server: str, tmp_path: Path) -> None:
    done = tuneforge("search", "ridge-diabetes", "--trials", "3", "--seed", "1", "--tracking-uri", server,
                     cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"MLflow UI: {server}/#/experiments/" in done.stdout
    client = MlflowClient(server)
    _, children = parent_and_children(server, "ridge-diabetes")
    assert len(children) == 3
    for child in children:
        assert child.info.artifact_uri.startswith("mlflow-artifacts:")
        report = client.download_artifacts(child.info.run_id, "cv_report.json", str(tmp_path))
        assert "Ridge" in json.loads(Path(report).read_text())["estimator"]
    # The store is the default one beside the server, its artifacts in mlartifacts/.
    assert (tmp_path / "mlflow.db").is_file() and any((tmp_path / "mlartifacts").rglob("cv_report.json"))


def test_the_server_answers_only_on_loopback_and_to_its_own_host_names(server: str) -> None:
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
    done = tuneforge("server", "--backend-store-uri", "http://127.0.0.1:1", cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("error: --backend-store-uri: 'http://127.0.0.1:1' is not a database")


def test_an_unreachable_tracking_server_fails_fast(tmp_path: Path) -> None:
    done = tuneforge("search", "ridge-diabetes", "--tracking-uri", f"http://127.0.0.1:{free_port()}",
                     cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("error: --tracking-uri: no MLflow server answers at http://127.0.0.1:")
    assert list(tmp_path.iterdir()) == []


def test_the_ray_token_is_never_printed(server: str, tmp_path: Path) -> None:
    token = secrets.token_hex(32)
    done = tuneforge("search", "ridge-diabetes", "--trials", "2", "--tracking-uri", server, cwd=tmp_path,
                     RAY_AUTH_TOKEN=token)
    assert done.returncode == 0, done.stderr
    assert token not in done.stdout + done.stderr
    assert "ray get-auth-token" in done.stdout  # how to authenticate to the dashboard, instead
