"""Shared fixtures: one local Ray for the session, each family's smoke search once for the
session, a fresh MLflow store per test; the suite's tiers and hypothesis profiles.

The tiers (README, "Tests"): ``make test`` runs every capability once, ``make test-all`` adds the
tests marked ``full`` and the ``ray_up`` session. Tests marked ``own_ray`` start Ray or a server
of their own and run in a pytest session of their own, where the shared Ray is not alive.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

settings.register_profile("make-test", max_examples=50, deadline=None)
settings.register_profile("all", max_examples=300, deadline=None)
settings.load_profile("make-test")
"""About 50 examples a property in ``make test``; ``make test-all`` passes
``--hypothesis-profile=all`` (300)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test of its own processes never shares the session's Ray: the two tiers of sessions
    stay apart (an ``own_ray`` test that asks for ``ray_local`` is a mistake, refused here)."""
    mixed = [item.nodeid for item in items
             if item.get_closest_marker("own_ray") and "ray_local" in getattr(item, "fixturenames", ())]
    if mixed:
        raise pytest.UsageError(f"tests marked own_ray use the shared ray_local: {mixed}")


SHELL_VARIABLES = ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")
"""What a user's shell may set that would choose a test's store or cluster for it."""


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests choose their own store and cluster: nothing leaks in from the shell, and the
    default store (``$TUNEFORGE_HOME/mlflow.db``) is a fresh one of each test's, not the user's."""
    for name in SHELL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TUNEFORGE_HOME", str(tmp_path_factory.mktemp("tuneforge-home")))


@contextlib.contextmanager
def isolated_environment() -> Iterator[pytest.MonkeyPatch]:
    """What ``_isolated_environment`` does for each test, for a fixture wider than a test; yields
    the MonkeyPatch, undone on exit."""
    import tempfile

    with pytest.MonkeyPatch.context() as patch:
        for name in SHELL_VARIABLES:
            patch.delenv(name, raising=False)
        patch.setenv("TUNEFORGE_HOME", tempfile.mkdtemp(prefix="tuneforge-home-"))
        yield patch


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray shared by the in-process searches (the runner joins a Ray already up). It
    declares two GPUs, as Ray allows on a CPU machine: how GPU scheduling is tested here."""
    import ray

    ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False,
             namespace="tuneforge-tests")
    yield ray
    ray.shutdown()


@dataclass(frozen=True)
class SmokeSearch:
    """A finished search of a bundled space and where it is: ``result`` (tuneforge's
    SearchResult), its MLflow store and its Ray Tune results folder."""

    result: Any
    tracking_uri: str
    storage: Path

    def trial_results(self) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
        """Each trial's config and every result it reported, in order, as Ray Tune wrote them
        (``params.json`` and ``result.json``), by trial folder name."""
        import json

        trials = {}
        for results in sorted(self.storage.glob("*/*/result.json")):
            reported = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
            trials[results.parent.name] = (json.loads((results.parent / "params.json").read_text()), reported)
        return trials


@pytest.fixture(scope="session")
def smoke_search(ray_local, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], SmokeSearch]:
    """``smoke_search(space)``: ``tuneforge search SPACE --algo random --trials 2 --seed 0`` (with
    ``--smoke`` for per-epoch families) into a store of its own, run once for the session: each
    family's tests and the trainable conformance suite read the same search. Its readers read:
    a test that writes to its store (the DARTS retrain's experiment, a report logged to the parent
    run) adds, and changes nothing the others read. A search that fails fails each reader, once."""
    import tuneforge
    from tuneforge.search_spaces import load_space
    from tuneforge.trainables import get_trainable

    done: dict[str, SmokeSearch | BaseException] = {}

    def search(space: str) -> SmokeSearch:
        if space not in done:
            folder = tmp_path_factory.mktemp(f"smoke-{space}")
            store, storage = f"sqlite:///{folder / 'mlflow.db'}", folder / "ray"
            smoke = get_trainable(load_space(space).trainable).smoke
            try:
                with isolated_environment():
                    result = tuneforge.search(space, algo="random", trials=2, seed=0, smoke=smoke,
                                              tracking_uri=store, storage=storage)
                done[space] = SmokeSearch(result, store, storage)
            except Exception as failed:  # each reader fails on it, without searching again
                done[space] = failed
        if isinstance(done[space], BaseException):
            raise done[space]
        return done[space]

    return search


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


USER_SPACE = """\
trainable: {reference}
metric: score
mode: max
params:
  x: {{type: float, low: 0.0, high: 1.0}}
"""
"""A space for a user's trainable (``.format(reference="file.py:function")``): maximise
``score`` over ``x`` in [0, 1]."""


GATHERING = """\
import os
import time
from pathlib import Path

from tuneforge.trainables import report


def train(config):
    # Each trial leaves a mark, then waits (at most config["wait_s"]) until config["n"] trials
    # have: trials that run at the same time meet; one alone waits it out and takes its mark
    # away, so that a trial after it is alone too.
    folder = Path(config["folder"])
    mark = folder / str(os.getpid())
    mark.touch()
    deadline = time.monotonic() + config["wait_s"]
    while len(list(folder.iterdir())) < config["n"] and time.monotonic() < deadline:
        time.sleep(0.05)
    met = len(list(folder.iterdir())) >= config["n"]
    if not met:
        mark.unlink()
    report({"met": float(met)})
"""
"""A user trainable that shows trials running at once, without timing: see :func:`gathering_space`."""


def gathering_space(folder: Path, n: int, wait_s: float = 60) -> Path:
    """A space of :data:`GATHERING` trials (metric ``met``, max) that wait, at most ``wait_s``,
    until ``n`` of them have started, written in ``folder`` (with the trainable's file and its
    marks folder)."""
    (folder / "marks").mkdir()
    write_space(folder, GATHERING, "gathering.py")
    return write_space(folder, f"trainable: gathering.py:train\nmetric: met\nmode: max\n"
                               f"config: {{folder: {folder / 'marks'}, n: {n}, wait_s: {wait_s}}}\n"
                               "params:\n  x: {type: float, low: 0.0, high: 1.0}\n", "gathering.yaml")


def parent_and_children(tracking_uri: str, experiment: str) -> tuple[Any, list[Any]]:
    """The one search (parent run) of an MLflow experiment and its trials (child runs);
    asserts that every run of the experiment is one or the other."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 1 + len(children), "every run is the parent or one of its children"
    return parent, children


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def needs(condition: bool, what: str) -> None:
    """Skip a test whose outside requirement is missing; in CI (``CI=true``), fail instead:
    .ci/run installs and starts everything the suite needs."""
    if not condition:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI lacks {what}; .ci/run should provide it")
        pytest.skip(f"needs {what} (.ci/run provides it)")


def needs_graphviz() -> None:
    """:func:`needs` Graphviz's ``dot``, which draws DARTS' cells."""
    needs(shutil.which("dot") is not None, "Graphviz's dot (apt-get install graphviz)")


def wait_for_http(url: str, process: subprocess.Popen, timeout_s: float = 120) -> None:
    """Poll ``url`` until it answers 200; fail if ``process`` exits first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            assert process.poll() is None, f"the server exited with {process.returncode}"
            assert time.monotonic() < deadline, f"{url} did not answer"
            time.sleep(0.5)


def write_space(folder: Path, text: str, name: str = "space.yaml") -> Path:
    """Write a space file for a test and return its path."""
    path = folder / name
    path.write_text(text)
    return path
