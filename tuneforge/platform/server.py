"""The MLflow tracking server on tuneforge's store: what ``tuneforge server`` and ``make ui`` run.

It serves the UI, the tracking API and the artifacts (``--serve-artifacts``), so drivers and
users on other machines log and browse over HTTP (``--tracking-uri http://HOST:PORT``). It binds
to 127.0.0.1 unless told otherwise, and accepts only the Host headers of the address it binds
(MLflow's ``--allowed-hosts``), which guards against DNS rebinding.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from tuneforge.errors import ConfigError
from tuneforge.platform.tracking import check_tracking_uri, resolve_tracking_uri

__all__ = ["ServerConfig", "serve_while_ray_runs", "server_command"]

_DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
_ARTIFACTS_FOLDER = "mlartifacts"
_ANY_INTERFACE = ("0.0.0.0", "::")
_RAY_POLL_S = 5.0
_RAY_MISSES_TO_STOP = 3  # a GCS busy for a moment is not a stopped cluster


@dataclass(frozen=True)
class ServerConfig:
    """A tracking server to start; ``backend_store_uri`` None means tuneforge's default store."""

    backend_store_uri: str | None = None
    host: str = "127.0.0.1"
    port: int = 5000
    artifacts_destination: str | None = None
    """Where served artifacts are kept; by default ``mlartifacts/`` beside a SQLite store."""
    workers: int = 2

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in _ANY_INTERFACE else self.host
        return f"http://{host}:{self.port}"


def _backend_store(uri: str | None) -> str:
    """``uri``, else the default store of searches, unless that is a server (then SQLite)."""
    store = uri or resolve_tracking_uri(None)
    if urlparse(store).scheme in ("http", "https"):
        store = uri or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    scheme = urlparse(store).scheme.split("+")[0]
    if scheme not in _DATABASE_SCHEMES:
        raise ConfigError(f"--backend-store-uri: {store!r} is not a database; use sqlite:///path.db "
                          "or postgresql://user:password@host/db")
    check_tracking_uri(store)
    return store


def _artifacts_destination(config: ServerConfig, store: str) -> str:
    if config.artifacts_destination:
        return str(Path(config.artifacts_destination).expanduser().resolve())
    if store.startswith("sqlite:///"):
        return str(Path(store.removeprefix("sqlite:///")).expanduser().resolve().parent / _ARTIFACTS_FOLDER)
    return str(Path.cwd() / _ARTIFACTS_FOLDER)


def _allowed_hosts(config: ServerConfig) -> list[str]:
    """The Host headers the server accepts: the bound address and localhost, with the port.
    Bound to every interface, MLflow's own default (localhost and private addresses) applies."""
    if config.host in _ANY_INTERFACE:
        return []
    names = dict.fromkeys([config.host, "localhost", "127.0.0.1"])
    return ["--allowed-hosts", ",".join(f"{name}:{config.port}" for name in names)]


def server_command(config: ServerConfig) -> tuple[list[str], str]:
    """The ``mlflow server`` command line for ``config``, and the store it serves."""
    if not 0 < config.port < 65536:
        raise ConfigError(f"--port: expected 1-65535, got {config.port}")
    if config.workers < 1:
        raise ConfigError(f"--workers: expected at least 1, got {config.workers}")
    store = _backend_store(config.backend_store_uri)
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store, "--host", config.host,
               "--port", str(config.port), "--workers", str(config.workers), "--serve-artifacts",
               "--artifacts-destination", _artifacts_destination(config, store),
               *_allowed_hosts(config)]
    return command, store


def _ray_answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=_RAY_POLL_S):
            return True
    except OSError:
        return False


def serve_while_ray_runs(command: list[str], ray_address: str) -> int:
    """Run the server until the Ray cluster at ``ray_address`` stops answering, then stop it.

    A cluster's head starts its tracking server this way, so that ``ray down`` (which only
    runs ``ray stop``) leaves nothing behind. Returns the server's exit code.
    """
    server = subprocess.Popen(command)
    signal.signal(signal.SIGTERM, lambda *_: server.terminate())
    misses = 0
    while server.poll() is None:
        misses = 0 if _ray_answers(ray_address) else misses + 1
        if misses >= _RAY_MISSES_TO_STOP:
            server.terminate()
            break
        time.sleep(_RAY_POLL_S)
    return server.wait()
