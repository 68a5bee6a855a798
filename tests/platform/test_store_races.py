"""Several drivers writing one new MLflow store at the same moment (issue 9, "Faults").

Three processes, released together by a barrier, each record a search of 8 trials with
:class:`~tuneforge.platform.tracking.SearchRecorder` alone (no Ray) into the same new store and
the same new experiment: they race on the store's schema creation, and on an existing store,
on the experiment's get-or-create. Each race is run a few times, each on a store of its own,
since one round may happen to be won cleanly.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import needs
from tuneforge.schema import Roles, Tags, TrialStatus

_DRIVERS = 3
_TRIALS = 8
_ROUNDS = 4
_EXPERIMENT = "race"
_METRICS = ("loss", "accuracy")


def _drive(uris: list[str], barrier: Any, driver: int, failures: Any) -> None:
    """One driver: for each store, open it as a search does, wait for the others, then record a
    whole search into it.
    Puts one line per failure on ``failures`` (a raised error, or the writes the recorder counted
    failed), then None."""
    import mlflow  # noqa: F401  # imported before the barrier, so that the drivers meet at the store

    from tuneforge.platform.tracking import SearchRecorder

    for uri in uris:
        recorder = SearchRecorder(tracking_uri=uri, experiment=_EXPERIMENT)
        try:
            recorder.preload()
            recorder.flush()  # the store is open, if it exists: the drivers meet at the experiment
            barrier.wait(timeout=120)
            recorder.start_search(run_name=f"driver-{driver}", params={"driver": driver}, tags={},
                                  artifacts={})
            for trial in range(_TRIALS):
                trial_id = f"d{driver}_t{trial}"
                recorder.start_trial(trial_id, trial_id, {"trial": trial})
                for step in (1, 2):
                    recorder.log_metrics(trial_id, {"loss": 1.0 / step, "accuracy": 0.5 * step}, step=step)
                recorder.end_trial(trial_id, TrialStatus.FINISHED)
            recorder.end_search(TrialStatus.FINISHED, metrics={"best": 1.0}, tags={}, artifacts={})
        except Exception as exc:  # reported to the test, which names the store
            failures.put(f"{uri}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
        if recorder.n_failed_writes:
            failures.put(f"{uri}: {recorder.n_failed_writes} failed writes")
    failures.put(None)


def _race(uris: list[str]) -> list[str]:
    """Run the drivers on every store in ``uris`` in turn; every failure of every driver."""
    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(_DRIVERS), context.Queue()
    drivers = [context.Process(target=_drive, args=(uris, barrier, d, queue)) for d in range(_DRIVERS)]
    for driver in drivers:
        driver.start()
    failures, n_done = [], 0
    try:
        while n_done < _DRIVERS:
            line = queue.get(timeout=300)
            n_done += line is None
            failures += [line] if line else []
    finally:
        for driver in drivers:
            driver.join(timeout=30)
            if driver.is_alive():
                driver.kill()
    return failures


def _check_store(uri: str) -> None:
    """One experiment, a parent run per driver, and every trial of each with every metric."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    [experiment] = [e for e in client.search_experiments() if e.name == _EXPERIMENT]
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get(Tags.ROLE) == Roles.SEARCH]
    children = [r for r in runs if r.data.tags.get(Tags.ROLE) == Roles.TRIAL]
    assert (len(parents), len(children)) == (_DRIVERS, _DRIVERS * _TRIALS)
    assert len(runs) == len(parents) + len(children), "every run is a search or one of its trials"
    assert all(r.info.status == "FINISHED" and "best" in r.data.metrics for r in parents)
    parent_ids = {r.info.run_id for r in parents}
    for child in children:
        assert child.data.tags[Tags.PARENT_RUN_ID] in parent_ids
        assert child.info.status == "FINISHED"
        assert {m: child.data.metrics.get(m) for m in _METRICS} == {"loss": 0.5, "accuracy": 1.0}
        assert len(client.get_metric_history(child.info.run_id, "loss")) == 2


def _create_stores(uris: list[str]) -> None:
    """Create the schema of each store, and no experiment."""
    from mlflow import MlflowClient

    for uri in uris:
        MlflowClient(uri).search_experiments()


def test_three_drivers_create_one_new_sqlite_store_together(tmp_path: Path) -> None:
    uris = []
    for round_ in range(2 * _ROUNDS):
        (tmp_path / str(round_)).mkdir()
        uris.append(f"sqlite:///{tmp_path / str(round_) / 'mlflow.db'}")
    _create_stores(uris[_ROUNDS:])
    assert _race(uris) == []
    for uri in uris:
        _check_store(uri)


@pytest.fixture
def postgres_uris() -> Iterator[list[str]]:
    """``2 * _ROUNDS`` new, empty databases (as tests/platform/test_postgres.py makes them)."""
    base = os.environ.get("TUNEFORGE_TEST_POSTGRES")
    needs(bool(base), "a PostgreSQL server in TUNEFORGE_TEST_POSTGRES")
    import psycopg

    names = [f"tuneforge_test_{uuid.uuid4().hex[:12]}" for _ in range(2 * _ROUNDS)]
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        try:
            for name in names:
                admin.execute(f"CREATE DATABASE {name}")
            yield [f"{base}/{name}" for name in names]
        finally:
            for name in names:
                _drop(admin, name)


def _drop(admin: Any, name: str) -> None:
    """Drop a database, retried: once seen to fail with InsufficientPrivilege, likely on an
    autovacuum worker the server started on the freshly filled database."""
    import psycopg

    for attempt in range(3):
        try:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            return
        except psycopg.errors.InsufficientPrivilege:
            if attempt == 2:
                raise
            time.sleep(1.0)


def test_three_drivers_create_one_new_postgresql_store_together(postgres_uris: list[str]) -> None:
    _create_stores(postgres_uris[_ROUNDS:])
    assert _race(postgres_uris) == []
    for uri in postgres_uris:
        _check_store(uri)
