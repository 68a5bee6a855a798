"""The MLflow tracking server on tuneforge's store: what ``tuneforge server`` and ``make ui`` run.

It serves the UI, the tracking API and the artifacts (``--serve-artifacts``), so drivers and
users on other machines log and browse over HTTP (``--tracking-uri http://HOST:PORT``). It binds
to 127.0.0.1 unless told otherwise, and accepts only the Host headers of the address it binds
(MLflow's ``--allowed-hosts``), which guards against DNS rebinding.

Bound beyond loopback, it runs MLflow's basic-auth app (``mlflow server --app-name basic-auth``)
unless ``insecure`` says otherwise: every request but ``/health`` needs a user's password. Its
users live in ``basic_auth.db`` beside a SQLite store, where MLflow creates the admin user at
the first start with the password of :data:`PASSWORD_VARIABLE` (issue 9, "Exposure"). The
password reaches MLflow through its ``MLFLOW_AUTH_ADMIN_PASSWORD`` variable, never the command
line, which ``ps`` shows to every user of the machine.
"""

from __future__ import annotations

import getpass
import ipaddress
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from tuneforge._tracking_uri import default_tracking_uri, tuneforge_home
from tuneforge.errors import ConfigError
from tuneforge.platform.tracking import check_tracking_uri, resolve_tracking_uri

__all__ = ["ADMIN_USERNAME", "PASSWORD_VARIABLE", "ServerConfig", "auth_environment", "read_admin_password",
           "serve_while_ray_runs", "server_command"]

PASSWORD_VARIABLE = "TUNEFORGE_SERVER_PASSWORD"
"""The environment variable that holds the admin password of a server bound beyond loopback."""
ADMIN_USERNAME = "admin"

_DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
_ARTIFACTS_FOLDER = "mlartifacts"
_ANY_INTERFACE = ("0.0.0.0", "::")
_RAY_POLL_S = 5.0
_RAY_MISSES_TO_STOP = 3  # a GCS busy for a moment is not a stopped cluster
_AUTH_DATABASE = "basic_auth.db"
_AUTH_CONFIG = "basic_auth.ini"
_MIN_PASSWORD_LENGTH = 12  # MLflow refuses shorter ones (mlflow.utils.validation._validate_password)
_AUTH_CONFIG_TEXT = """\
# Written by `tuneforge server` at each start: edits are overwritten. The admin password is not
# here: MLflow reads the admin's name and password from MLFLOW_AUTH_ADMIN_USERNAME and
# MLFLOW_AUTH_ADMIN_PASSWORD, and uses them only to create the admin user.
[mlflow]
default_permission = READ
database_uri = {database_uri}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
"""


@dataclass(frozen=True)
class ServerConfig:
    """A tracking server to start; ``backend_store_uri`` None means tuneforge's default store."""

    backend_store_uri: str | None = None
    host: str = "127.0.0.1"
    port: int = 5000
    artifacts_destination: str | None = None
    """Where served artifacts are kept; by default ``mlartifacts/`` beside a SQLite store."""
    workers: int = 2
    insecure: bool = False
    """Serve without authentication even beyond loopback."""

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in _ANY_INTERFACE else self.host
        return f"http://{host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        """Whether only this machine can reach the server (127.0.0.0/8, ::1, localhost)."""
        try:
            return self.host == "localhost" or ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # a host name: it may resolve to any interface
            return False

    @property
    def needs_auth(self) -> bool:
        """Basic auth is on beyond loopback, unless ``insecure``."""
        return not (self.is_loopback or self.insecure)


def _backend_store(uri: str | None) -> str:
    """``uri``, else the default store of searches, unless that is a server (then SQLite)."""
    store = uri or resolve_tracking_uri(None)
    if urlparse(store).scheme in ("http", "https"):
        store = uri or default_tracking_uri()
    scheme = urlparse(store).scheme.split("+")[0]
    if scheme not in _DATABASE_SCHEMES:
        raise ConfigError(f"--tracking-uri: {store!r} is not a database; use sqlite:///path.db "
                          "or postgresql://user:password@host/db")
    check_tracking_uri(store)
    return store


def _artifacts_destination(config: ServerConfig, store: str) -> str:
    if config.artifacts_destination:
        return str(Path(config.artifacts_destination).expanduser().resolve())
    if store.startswith("sqlite:///"):
        return str(Path(store.removeprefix("sqlite:///")).expanduser().resolve().parent / _ARTIFACTS_FOLDER)
    return str(tuneforge_home() / _ARTIFACTS_FOLDER)


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
               *_allowed_hosts(config), *(["--app-name", "basic-auth"] if config.needs_auth else [])]
    return command, store


def read_admin_password(environ: Mapping[str, str] = os.environ) -> str:
    """The admin password: :data:`PASSWORD_VARIABLE`, else asked for on a terminal.

    ConfigError without either: a password is never a flag, which ``ps`` would show.
    """
    password = environ.get(PASSWORD_VARIABLE)
    if password is None and sys.stdin.isatty():
        password = getpass.getpass(f"admin password of the MLflow server (user {ADMIN_USERNAME!r}): ")
    if password is None:
        raise ConfigError(f"--host: serving beyond loopback needs an admin password; set "
                          f"{PASSWORD_VARIABLE}, run it on a terminal to be asked, or pass --insecure "
                          "to serve without one")
    if len(password) < _MIN_PASSWORD_LENGTH:
        raise ConfigError(f"{PASSWORD_VARIABLE}: MLflow needs a password of at least "
                          f"{_MIN_PASSWORD_LENGTH} characters, got {len(password)}")
    return password


def _auth_database(store: str) -> Path:
    """``basic_auth.db`` beside a SQLite store, else in tuneforge's home folder."""
    if store.startswith("sqlite:///"):
        return Path(store.removeprefix("sqlite:///")).expanduser().resolve().parent / _AUTH_DATABASE
    return tuneforge_home() / _AUTH_DATABASE


def _check_existing_admin(database: Path, password: str) -> None:
    """ConfigError if ``database`` already holds the admin user with another password: MLflow
    would ignore the new one without a word, and every login with it would get 401."""
    from werkzeug.security import check_password_hash  # Flask's, as MLflow's auth store uses

    if not database.is_file():
        return
    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
            row = connection.execute("SELECT password_hash FROM users WHERE username = ?",
                                     (ADMIN_USERNAME,)).fetchone()
    except sqlite3.Error:
        return  # not yet initialised: MLflow creates the tables and the user
    if row is not None and not check_password_hash(row[0], password):
        raise ConfigError(f"{PASSWORD_VARIABLE}: not the password of user {ADMIN_USERNAME!r} in {database} "
                          "(set when it was created); give that one, or change it with MLflow's "
                          "update-password API")


def auth_environment(store: str, password: str) -> dict[str, str]:
    """The environment variables that turn basic auth on for ``store``'s server.

    Writes ``basic_auth.ini`` (owner-only, no secret in it) beside the users' database.
    """
    database = _auth_database(store)
    _check_existing_admin(database, password)
    ini = database.with_name(_AUTH_CONFIG)
    partial = ini.with_name(f".{ini.name}.{os.getpid()}")
    with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
        # MLflow's configparser reads % as interpolation: a folder name may hold one.
        file.write(_AUTH_CONFIG_TEXT.format(database_uri=f"sqlite:///{database}".replace("%", "%%")))
    os.replace(partial, ini)
    # CSRF tokens must verify in every worker: one key for them all (a user's own, if set).
    secret_key = os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY") or secrets.token_hex(32)
    # MLflow's variables win over the ini: a stray MLFLOW_AUTH_ADMIN_USERNAME would rename the admin.
    return {"MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN_USERNAME,
            "MLFLOW_AUTH_ADMIN_PASSWORD": password, "MLFLOW_FLASK_SERVER_SECRET_KEY": secret_key}


def _ray_answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=_RAY_POLL_S):
            return True
    except OSError:
        return False


def serve_while_ray_runs(command: list[str], ray_address: str, env: Mapping[str, str] | None = None) -> int:
    """Run the server until the Ray cluster at ``ray_address`` stops answering, then stop it.

    A cluster's head starts its tracking server this way, so that ``ray down`` (which only
    runs ``ray stop``) leaves nothing behind. ``env`` is the server's environment (default:
    this process's). Returns the server's exit code.
    """
    server = subprocess.Popen(command, env=env)
    signal.signal(signal.SIGTERM, lambda *_: server.terminate())
    misses = 0
    while server.poll() is None:
        misses = 0 if _ray_answers(ray_address) else misses + 1
        if misses >= _RAY_MISSES_TO_STOP:
            server.terminate()
            break
        time.sleep(_RAY_POLL_S)
    return server.wait()
