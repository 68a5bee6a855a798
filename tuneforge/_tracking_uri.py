"""Where a search's MLflow store is, and whether MLflow can use it: shared by platform/ (which
writes the store) and dashboards/ (which reads it), so it sits below both.

Checking creates nothing and imports no MLflow: a store that cannot be used is refused in a
second, before Ray starts or MLflow spends its minutes of retries.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from tuneforge._paths import check_writable
from tuneforge.errors import ConfigError, first_line

__all__ = ["HOME_VARIABLE", "check_tracking_uri", "default_tracking_uri", "resolve_tracking_uri",
           "tuneforge_home"]

HOME_VARIABLE = "TUNEFORGE_HOME"
"""The folder of tuneforge's own files (the default MLflow store); ``~/.tuneforge`` if unset."""
_SQLITE_FILE = "mlflow.db"
_HTTP_TIMEOUT_S = 5.0
_DATABASE_SCHEMES = {"postgresql": "PostgreSQL", "mysql": "MySQL", "mssql": "SQL Server"}
"""The databases MLflow stores runs in (SQLAlchemy dialects), by their names."""
_CONNECT_TIMEOUTS = {"postgresql": {"connect_timeout": int(_HTTP_TIMEOUT_S)},
                     "mysql": {"connect_timeout": int(_HTTP_TIMEOUT_S)},
                     "mssql": {"timeout": int(_HTTP_TIMEOUT_S)}}
_DRIVER_HINTS = {"postgresql": "pip install 'psycopg[binary]' and use postgresql+psycopg://...",
                 "mysql": "pip install pymysql and use mysql+pymysql://...",
                 "mssql": "pip install pyodbc and use mssql+pyodbc://..."}


def tuneforge_home() -> Path:
    """``$TUNEFORGE_HOME``, else ``~/.tuneforge``: the same folder from any working directory."""
    return Path(os.environ.get(HOME_VARIABLE) or "~/.tuneforge").expanduser().resolve()


def default_tracking_uri() -> str:
    """The store every command uses unless told otherwise: ``mlflow.db`` in :func:`tuneforge_home`."""
    return f"sqlite:///{tuneforge_home() / _SQLITE_FILE}"


def resolve_tracking_uri(uri: str | None) -> str:
    """One rule for every command: ``uri`` (``--tracking-uri``), else ``MLFLOW_TRACKING_URI``,
    else :func:`default_tracking_uri`, whose folder is made here if missing (empty until a
    search writes the store)."""
    resolved = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if resolved:
        return resolved
    tuneforge_home().mkdir(parents=True, exist_ok=True)
    return default_tracking_uri()


def check_tracking_uri(uri: str) -> None:
    """ConfigError for a store MLflow cannot use, or cannot create or write; creates nothing."""
    parsed = urlparse(uri)
    scheme = "databricks" if uri == "databricks" else parsed.scheme.split("+")[0]  # MLflow's name for it
    if scheme == "sqlite":
        if ":///" not in uri:
            raise ConfigError(f"--tracking-uri: {uri!r} names no database file; use sqlite:///path/to/mlflow.db")
        database = Path(uri.split(":///", 1)[1]).expanduser()
        if not database.parent.is_dir():
            raise ConfigError(f"--tracking-uri: folder {database.parent} of the SQLite store does not exist")
        check_writable(database, "--tracking-uri", folder=False)
    elif scheme in ("", "file"):
        folder = Path(parsed.path or uri).expanduser().parent
        if not folder.is_dir():
            raise ConfigError(f"--tracking-uri: folder {folder} does not exist")
        check_writable(Path(parsed.path or uri), "--tracking-uri", folder=True)
    elif scheme in ("http", "https"):
        _check_server(uri)
    elif scheme in _DATABASE_SCHEMES:
        _check_database(uri, scheme)
    elif scheme == "databricks":
        _check_databricks()
    else:
        raise ConfigError(f"--tracking-uri: unsupported scheme {parsed.scheme!r}; use sqlite:///path.db, "
                          "http(s)://host:port, postgresql://... or a folder")


def _check_database(uri: str, scheme: str) -> None:
    """The dialect's driver is installed, and it connects once, with a timeout; connecting
    creates nothing (MLflow makes its tables later)."""
    import sqlalchemy

    name = _DATABASE_SCHEMES[scheme]
    try:
        engine = sqlalchemy.create_engine(uri, connect_args=_CONNECT_TIMEOUTS.get(scheme, {}))
    except (ImportError, sqlalchemy.exc.NoSuchModuleError) as exc:
        raise ConfigError(f"--tracking-uri: {name} needs its Python driver, which is not installed "
                          f"({exc}); {_DRIVER_HINTS[scheme]}") from None
    except sqlalchemy.exc.ArgumentError as exc:
        raise ConfigError(f"--tracking-uri: {uri!r} is not a {name} URI ({exc})") from None
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.DBAPIError as exc:
        reason = first_line(exc.orig) if exc.orig else type(exc).__name__
        raise ConfigError(f"--tracking-uri: cannot connect to {name} at "
                          f"{engine.url.render_as_string(hide_password=True)}: {reason}") from None
    finally:
        engine.dispose()


def _check_databricks() -> None:
    """A Databricks workspace is configured, as MLflow's client will look for one: the
    DATABRICKS_HOST variable or a Databricks config file."""
    config = Path(os.environ.get("DATABRICKS_CONFIG_FILE") or "~/.databrickscfg").expanduser()
    if not os.environ.get("DATABRICKS_HOST") and not config.is_file():
        raise ConfigError(f"--tracking-uri: databricks names no workspace: set DATABRICKS_HOST and "
                          f"DATABRICKS_TOKEN, or write {config} (databricks configure)")


def _check_server(uri: str) -> None:
    """The server answers, and lets this process in: a server with basic auth (``tuneforge
    server`` beyond loopback) answers its API with 401 unless MLFLOW_TRACKING_USERNAME and
    MLFLOW_TRACKING_PASSWORD (MLflow's client's own variables) name a user."""
    import base64

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=_HTTP_TIMEOUT_S):
            pass
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(f"--tracking-uri: no MLflow server answers at {uri} ({reason})") from None
    request = urllib.request.Request(f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search?max_results=1")
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=_HTTP_TIMEOUT_S):
            pass
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            who = f"user {user!r}" if user and password else "a request without credentials"
            raise ConfigError(f"--tracking-uri: the MLflow server at {uri} refused {who} (HTTP {exc.code}); "
                              "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD") from None
    except (urllib.error.URLError, OSError):
        pass  # it answered /health: let MLflow's client say what else is wrong
