"""Ray's token authentication during a search: on, and the token never shown (issue 9, "Exposure").

The search starts a local Ray as a first-time user's would, with a home of its own, where Ray
generates the token (``~/.ray/auth_token``), and a Ray temp dir of its own, whose session logs
are read afterwards. Every command line on the machine is sampled while it runs, as ``ps``
shows them to every user.
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
from pathlib import Path

import pytest

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


@pytest.mark.timeout(400)
def test_a_search_keeps_ray_token_auth_on_and_never_shows_the_token(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    ray_temp = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths must fit in 107 bytes
    env = {name: value for name, value in os.environ.items()
           if name not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")}
    env.update(HOME=str(home), RAY_TMPDIR=ray_temp)
    command = [str(Path(sys.executable).parent / "tuneforge"), "search", "branin", "--trials", "2",
               "--seed", "0", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
               "--storage", str(tmp_path / "results")]
    try:
        returncode, command_lines, auth_modes = _run_sampling_ps(command, cwd=tmp_path, env=env,
                                                                 ray_temp=ray_temp)
        logs = _files_under(Path(ray_temp))
    finally:
        shutil.rmtree(ray_temp, ignore_errors=True)
    output = (tmp_path / "stdout.txt").read_text() + (tmp_path / "stderr.txt").read_text()
    assert returncode == 0, output
    assert auth_modes == {"token"}, "the local Ray's GCS ran with token authentication"
    token_file = home / ".ray" / "auth_token"
    assert token_file.is_file(), "Ray generated the local cluster's token in the user's ~/.ray"
    token = token_file.read_text().strip()
    assert len(token) >= 32
    assert any("raylet" in line and ray_temp in line for line in command_lines), "ps saw the cluster"
    assert "ray get-auth-token" in output  # how to sign in to the dashboard, instead of the token
    assert token not in output
    assert not [line for line in command_lines if token in line or token in _decoded_config_lists(line)]
    assert any(path.suffix in (".log", ".out", ".err") for path in logs), "Ray wrote session logs"
    assert not [path for path, content in logs.items() if token.encode() in content]
    leaked = [path for path, content in _files_under(tmp_path).items()
              if token.encode() in content and path != token_file]
    assert not leaked, "the token is in the store or the Tune results"
