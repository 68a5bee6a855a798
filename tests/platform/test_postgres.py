"""MLflow on a real PostgreSQL server: directly, and behind ``tuneforge server``.

``TUNEFORGE_TEST_POSTGRES`` is a role that may create databases, e.g.
``postgresql://tuneforge:tuneforge@127.0.0.1:5432``; .ci/run starts the server and sets it.
Each test gets a database of its own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import gathering_space, needs, parent_and_children
from tests.platform.test_cli import tuneforge
from tests.platform.test_server import start_server, stop_server

pytestmark = pytest.mark.own_ray  # searches and servers are processes of their own, with their own Ray


@pytest.fixture
def postgres_uri() -> Iterator[str]:
    base = os.environ.get("TUNEFORGE_TEST_POSTGRES")
    needs(bool(base), "a PostgreSQL server in TUNEFORGE_TEST_POSTGRES")
    import psycopg

    name = f"tuneforge_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
        try:
            yield f"{base}/{name}"
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _check_four_concurrent_trials(tracking_uri: str, folder: Path) -> None:
    """Four trials at once (half a CPU each: four on 2 CPUs; the first four each wait until four
    have started, the last four find their marks), every one recorded with its metrics; the
    local Ray takes the machine's CPUs, whatever their number."""
    done = tuneforge("search", str(gathering_space(folder, 4)), "--experiment", "gathering", "--trials", "8",
                     "--seed", "4", "--cpus-per-trial", "0.5", "--tracking-uri", tracking_uri, cwd=folder)
    assert done.returncode == 0, done.stderr
    assert f"{os.cpu_count()} CPUs" in done.stdout
    _, children = parent_and_children(tracking_uri, "gathering")
    assert len(children) == 8
    assert all(r.info.status == "FINISHED" and r.data.metrics["met"] == 1.0 for r in children)
    intervals = [(r.info.start_time, r.info.end_time) for r in children]
    most_at_once = max(sum(start <= t < end for start, end in intervals) for t, _ in intervals)
    assert most_at_once >= 4


def test_a_search_logs_straight_into_postgresql(postgres_uri: str, tmp_path: Path) -> None:
    _check_four_concurrent_trials(postgres_uri, tmp_path)


def test_a_wrong_password_is_one_line_and_creates_nothing(postgres_uri: str, tmp_path: Path) -> None:
    wrong = postgres_uri.replace("://tuneforge:tuneforge@", "://tuneforge:wrong@")
    assert wrong != postgres_uri
    done = tuneforge("search", "ridge-diabetes", "--tracking-uri", wrong, cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("error: --tracking-uri: cannot connect to PostgreSQL at ")
    assert "wrong" not in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_server_on_postgresql_records_four_concurrent_trials(postgres_uri: str, tmp_path: Path) -> None:
    url, server = start_server(tmp_path, "--backend-store-uri", postgres_uri)
    try:
        _check_four_concurrent_trials(url, tmp_path)
    finally:
        stop_server(server)
