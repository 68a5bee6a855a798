"""Shared fixtures: one local Ray for the session, a fresh MLflow store per test."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose their own store and cluster: nothing leaks in from the shell."""
    for name in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray shared by the in-process searches (the runner joins a Ray already up)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             namespace="tuneforge-tests")
    yield ray
    ray.shutdown()


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def write_space(folder: Path, text: str, name: str = "space.yaml") -> Path:
    """Write a space file for a test and return its path."""
    path = folder / name
    path.write_text(text)
    return path
