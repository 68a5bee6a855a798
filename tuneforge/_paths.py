"""Whether a search can create its files (the SQLite store, Ray's results folder), checked
before anything is created: a path that cannot be written is refused in a second, not after
Ray has started (or, for SQLite, after MLflow's two minutes of retries)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tuneforge.errors import ConfigError

__all__ = ["check_writable"]


def check_writable(path: Path, flag: str, *, folder: bool) -> None:
    """ConfigError naming ``flag`` unless ``path`` is, or can be created as, a writable folder
    (``folder``) or file. Folders missing above it count as creatable when the nearest one that
    exists is a folder this process can write in (Ray makes the missing ones). Creates nothing:
    the write test is an unnamed temporary file (``O_TMPFILE``; else one removed at once)."""
    path = Path(path).expanduser().absolute()
    existing = _nearest_existing(path, flag)
    if existing != path:
        if not existing.is_dir():
            raise ConfigError(f"{flag}: cannot create {path}: {existing} is not a folder")
        _check_can_write_in(existing, flag)
    elif path.is_dir() != folder:
        raise ConfigError(f"{flag}: {path} is {'not a folder' if folder else 'a folder, not a file'}")
    elif not folder and not os.access(path, os.R_OK | os.W_OK):
        raise ConfigError(f"{flag}: cannot write {path} (permission denied)")
    else:
        _check_can_write_in(path if folder else path.parent, flag)


def _nearest_existing(path: Path, flag: str) -> Path:
    """``path`` or its nearest ancestor that exists ("/" always does)."""
    try:
        return next(p for p in (path, *path.parents) if p.exists())
    except OSError as exc:  # a folder on the way this process may not look into
        raise ConfigError(f"{flag}: cannot reach {path} ({exc.strerror or type(exc).__name__})") from None


def _check_can_write_in(folder: Path, flag: str) -> None:
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"{flag}: cannot write in {folder} ({reason})") from None
