"""``tuneforge search`` as a first-time user runs it in a terminal: its progress and summary, the
default store and results folder in the working directory, and Ray's token authentication on,
the token never shown (issue 9, "Exposure").

One search serves the module: it starts a local Ray as a first-time user's would, with a home of
its own, where Ray generates the token (``~/.ray/auth_token``), and a Ray temp dir of its own,
whose session logs are read afterwards. Every command line on the machine is sampled while it
runs, as ``ps`` shows them to every user.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.own_ray  # the search is a driver process of its own, with its own Ray

_SAMPLE_EVERY_S = 0.2
_CONFIG_LIST = re.compile(r"--config_list=(\S+)")
"""Ray passes its system config to gcs_server and raylet base64-encoded: a token there is a leak too."""


def _decoded_config_lists(command_line: str) -> str:
    decoded = []
    for encoded in _CONFIG_LIST.findall(command_line):
        try:
            decoded.append(base64.b64decode(encoded).decode(errors="replace"))
        except (binascii.Error, ValueError):
            continue
    return "\n".join(decoded)


def _ray_auth_mode(pid: str) -> str | None:
    """RAY_AUTH_MODE in the environment of a process, or None if it has none or is gone (a
    process may end between the ``ps`` sample and this read)."""
    try:
        environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    found = [entry.split(b"=", 1)[1] for entry in environment if entry.startswith(b"RAY_AUTH_MODE=")]
    return found[0].decode() if found else None


def _files_under(*folders: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for folder in folders for path in folder.rglob("*")
            if path.is_file() and not path.is_symlink()}


def _run_sampling_ps(command: list[str], *, cwd: Path, env: dict[str, str], ray_temp: str,
                     timeout_s: float = 300) -> tuple[int, list[str], set[str]]:
    """Run ``command`` while sampling ``ps``; returns its exit code, every command line seen,
    and the RAY_AUTH_MODE of each gcs_server that keeps its files in ``ray_temp``."""
    lines: list[str] = []
    auth_modes: set[str] = set()
    with open(cwd / "stdout.txt", "w") as stdout, open(cwd / "stderr.txt", "w") as stderr:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=stdout, stderr=stderr)
        deadline = time.monotonic() + timeout_s
        try:
            while process.poll() is None:
                assert time.monotonic() < deadline, "the search did not finish"
                sample = subprocess.run(["ps", "-eww", "-o", "pid=,args="], capture_output=True, text=True)
                for line in sample.stdout.splitlines():
                    pid, _, args = line.strip().partition(" ")
                    lines.append(args)
                    if "gcs_server" in args and ray_temp in args and (mode := _ray_auth_mode(pid)):
                        auth_modes.add(mode)
                time.sleep(_SAMPLE_EVERY_S)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
    return process.returncode, lines, auth_modes


@dataclass(frozen=True)
class Sampled:
    """The module's search: its folder, exit code, output, the command lines ``ps`` showed while it
    ran, the auth mode of its GCS, its Ray temp dir's files and the token Ray generated."""

    folder: Path
    returncode: int
    out: str
    err: str
    command_lines: list[str]
    auth_modes: set[str]
    ray_temp: str
    logs: dict[Path, bytes]
    token_file: Path


@pytest.fixture(scope="module")
def sampled(tmp_path_factory: pytest.TempPathFactory) -> Sampled:
    """``tuneforge search ridge-diabetes --trials 4 --seed 1`` in a fresh folder, with the
    defaults (the store in ``~/.tuneforge``, HOME a fresh folder; results in the working
    directory), under ``ps`` sampling."""
    folder = tmp_path_factory.mktemp("cli-search")
    home = folder / "home"
    home.mkdir()
    ray_temp = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths must fit in 107 bytes
    env = {name: value for name, value in os.environ.items() if name not in (
        "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS", "MLFLOW_TRACKING_URI",
        "TUNEFORGE_HOME")}
    env.update(HOME=str(home), RAY_TMPDIR=ray_temp)
    command = [str(Path(sys.executable).parent / "tuneforge"), "search", "ridge-diabetes", "--trials", "4",
               "--seed", "1"]
    try:
        returncode, command_lines, auth_modes = _run_sampling_ps(command, cwd=folder, env=env,
                                                                 ray_temp=ray_temp)
        logs = _files_under(Path(ray_temp))
    finally:
        shutil.rmtree(ray_temp, ignore_errors=True)
    out, err = (folder / "stdout.txt").read_text(), (folder / "stderr.txt").read_text()
    return Sampled(folder, returncode, out, err, command_lines, auth_modes, ray_temp, logs,
                   home / ".ray" / "auth_token")


@pytest.mark.timeout(400)
def test_search_prints_progress_and_a_summary(sampled: Sampled) -> None:
    assert sampled.returncode == 0, sampled.err
    out, folder = sampled.out, sampled.folder
    assert "Searching ridge-diabetes" in out and "4 trials, seed 1" in out
    progress = [line[:5] for line in out.splitlines() if line.startswith("[")]
    assert progress == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    assert "Top 4 trials by cv_neg_rmse (max)" in out and "Best config: alpha=" in out
    store = folder / "home" / ".tuneforge" / "mlflow.db"  # the default store, in ~/.tuneforge
    assert f"creating the MLflow store sqlite:///{store}: every tuneforge command's default" in out
    assert f"tuneforge server --tracking-uri sqlite:///{store}" in out
    assert "Traceback" not in sampled.err and not (folder / "mlflow.db").exists()
    # The results folder is in the working directory.
    client = MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("ridge-diabetes")
    assert len(client.search_runs([experiment.experiment_id])) == 5
    assert len(list((folder / "ray_results").iterdir())) == 1


@pytest.mark.timeout(400)
def test_a_search_keeps_ray_token_auth_on_and_never_shows_the_token(sampled: Sampled) -> None:
    output = sampled.out + sampled.err
    assert sampled.returncode == 0, output
    assert sampled.auth_modes == {"token"}, "the local Ray's GCS ran with token authentication"
    assert sampled.token_file.is_file(), "Ray generated the local cluster's token in the user's ~/.ray"
    token = sampled.token_file.read_text().strip()
    assert len(token) >= 32
    assert any("raylet" in line and sampled.ray_temp in line for line in sampled.command_lines), "ps saw it"
    assert "ray get-auth-token" in output  # how to sign in to the dashboard, instead of the token
    assert token not in output
    assert not [line for line in sampled.command_lines
                if token in line or token in _decoded_config_lists(line)]
    assert any(path.suffix in (".log", ".out", ".err") for path in sampled.logs), "Ray wrote session logs"
    assert not [path for path, content in sampled.logs.items() if token.encode() in content]
    leaked = [path for path, content in _files_under(sampled.folder).items()
              if token.encode() in content and path != sampled.token_file]
    assert not leaked, "the token is in the store or the Tune results"
