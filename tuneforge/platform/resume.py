"""Finding a search again: what ``tuneforge resume`` continues and ``tuneforge runs`` lists.

Each search writes :class:`SavedSearch` (``search.json``) into its Ray results folder and onto
its MLflow parent run when it starts. That file is the link between the two: the Tune
experiment that :meth:`ray.tune.Tuner.restore` continues, and the parent run whose trials keep
their one child run each. A search is found by its results folder, or by its experiment's name
(the newest interrupted search there).
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError
from tuneforge.platform.planning import SearchOptions
from tuneforge.schema import Artifacts, Roles, Tags, TrialStatus, interrupted

__all__ = ["LOCK_FILE", "SavedSearch", "SavedState", "SearchRun", "check_saved_state", "ended_trials",
           "find_search", "list_searches", "resume_command", "search_lock"]

_TUNER_FILE = "tuner.pkl"
_SNAPSHOTS = "experiment_state-*.json"
"""Ray Tune's saved experiment, one file a driver session, named by the session's start."""

LOCK_FILE = "search.lock"
"""In a search's local results folder: locked (``flock``) while a driver runs the search."""


@dataclass(frozen=True)
class SavedSearch:
    """What continuing a search needs: where it is in Ray and in MLflow, and how it was run."""

    name: str
    """The Tune experiment's name (``<space>-<algo>-<time>``)."""
    experiment_path: str
    local_dir: str
    """The driver's folder of the search (the results folder, where storage is local)."""
    tracking_uri: str
    experiment: str
    parent_run_id: str
    space_yaml: str
    """The space document the search ran (YAML)."""
    space_name: str
    space_source: str | None
    """The space file, where there was one (a user trainable's file is found beside it)."""
    options: dict[str, Any]
    """Its :class:`SearchOptions`, with the seed it drew."""
    time_used_s: float = 0.0
    """Seconds of its ``--time-budget`` spent so far (written while it runs; a resumed search
    gets what is left)."""
    rebuilds: int = 0
    """How many times a resume rebuilt it from MLflow, its Ray Tune state damaged."""
    kept_trials: tuple[str, ...] = ()
    """The trials that ended before its last rebuild: the Tune experiment that runs it now does
    not know them, and they are never closed as lost."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, default=str)

    @classmethod
    def from_json(cls, text: str, where: str) -> SavedSearch:
        try:
            data = json.loads(text)
            data["kept_trials"] = tuple(data.get("kept_trials", ()))
            return cls(**data)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: not a tuneforge search.json ({exc})") from None

    def search_options(self, **overrides: Any) -> SearchOptions:
        """The options the search ran with (``tags`` as pairs again), with ``overrides``."""
        values = {**self.options, "tags": tuple(tuple(pair) for pair in self.options.get("tags", ()))}
        known = {f.name for f in dataclasses.fields(SearchOptions)}
        return SearchOptions(**{**{k: v for k, v in values.items() if k in known}, **overrides})


def resume_command(saved_path: str) -> str:
    """The command that continues the search whose results folder is ``saved_path``."""
    return f"tuneforge resume {saved_path}"


@contextmanager
def search_lock(folder: Path, name: str) -> Iterator[None]:
    """Held while this process runs the search ``name`` whose local results folder is
    ``folder`` (made if missing): a second driver of the same search, such as a second
    ``tuneforge resume``, is refused with ConfigError. The lock goes with the process, however
    it ends."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ConfigError(f"search {name} is being run by {holder} (it holds {path}): nothing to resume; "
                          "wait for it to end, or stop it first") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()} on {os.uname().nodename}")
    handle.flush()
    try:
        yield
    finally:
        handle.close()


@dataclass(frozen=True)
class SavedState:
    """What :func:`check_saved_state` found of a search's saved Tune state."""

    restorable: bool
    """Whether ``Tuner.restore`` can continue it; else the search is rebuilt from MLflow."""
    note: str | None = None
    """One line on what is damaged and what becomes of it, where anything is."""
    damaged: tuple[Path, ...] = ()
    """The files to set aside before the search goes on (:meth:`set_aside`)."""

    def set_aside(self) -> None:
        """Rename each damaged file ``*.damaged`` (a snapshot with its search algorithm's state),
        so that Tune reads the rest, or, for a rebuild, writes its own."""
        for path in self.damaged:
            _set_aside(path)


def check_saved_state(experiment_path: str, name: str) -> SavedState:
    """Check, without changing anything, what ``Tuner.restore`` will read of the search ``name``
    in its local results folder (a remote storage is not checked): its ``tuner.pkl`` and its
    experiment snapshots.

    Where the newest snapshots are damaged (a driver killed while writing one) and an earlier
    one is whole, the search is restorable once they are set aside. Where the tuner is damaged
    or missing, or every snapshot is damaged, it is not: all of Tune's saved state is to be set
    aside and the search rebuilt from MLflow and ``search.json`` (see
    :func:`tuneforge.platform.runner.resume`). The note names each damaged file and its problem."""
    folder = Path(experiment_path)
    if "://" in experiment_path or not folder.is_dir():
        return SavedState(restorable=True)
    snapshots = sorted(folder.glob(_SNAPSHOTS), reverse=True)  # newest first: names hold the time
    problems = {snapshot: _json_problem(snapshot) for snapshot in snapshots}
    whole = [snapshot for snapshot in snapshots if problems[snapshot] is None]
    tuner_problem = _pickle_problem(folder / _TUNER_FILE)
    if tuner_problem or (snapshots and not whole):
        damaged = (f"{folder / _TUNER_FILE} is {tuner_problem}" if tuner_problem else
                   f"{snapshots[0]} is damaged ({problems[snapshots[0]]}) and Ray Tune kept no earlier "
                   "snapshot whole")
        return SavedState(restorable=False, damaged=(folder / _TUNER_FILE, *snapshots),
                          note=f"saved state of search {name}: {damaged}; set aside, the search is "
                               "rebuilt from MLflow and search.json")
    damaged_snapshots = tuple(snapshot for snapshot in snapshots if whole and snapshot.name > whole[0].name)
    if not damaged_snapshots:
        return SavedState(restorable=True)
    names = ", ".join(f"{snapshot.name} ({problems[snapshot]})" for snapshot in damaged_snapshots)
    return SavedState(restorable=True, damaged=damaged_snapshots,
                      note=f"damaged saved state set aside: {names}; resuming from {whole[0].name}")


def _set_aside(path: Path) -> None:
    """Rename ``path`` (a snapshot with its search algorithm's state, or the tuner) ``*.damaged``."""
    if path.name.startswith("experiment_state-"):
        session = path.name.removeprefix("experiment_state-").removesuffix(".json")
        paths = list(path.parent.glob(f"*-{session}.*"))
    else:
        paths = [path] if path.exists() else []
    for each in paths:
        if not each.name.endswith(".damaged"):
            each.rename(each.with_name(each.name + ".damaged"))


def _json_problem(path: Path) -> str | None:
    try:
        json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _pickle_problem(path: Path) -> str | None:
    """What is wrong with ``path`` as a pickle ("missing", "damaged (...)"), read without running
    it (its opcodes, to STOP); None where it is whole."""
    import pickletools

    if not path.is_file():
        return "missing"  # a driver killed before Tune wrote it, or a rebuild killed before
    try:
        last = None
        for opcode, _, _ in pickletools.genops(path.read_bytes()):
            last = opcode
    except Exception as exc:  # a truncated or garbled stream, whatever pickletools raises
        return f"damaged ({type(exc).__name__}: {exc})"
    return None if last is not None and last.name == "STOP" else "damaged (it ends before the pickle does)"


def ended_trials(saved: SavedSearch) -> frozenset[str]:
    """The trial ids of the search's runs that ended in MLflow (finished, stopped or failed; a
    run closed as lost is not counted). Only reads the store."""
    from mlflow import MlflowClient

    from tuneforge.platform._store_writer import _all_runs
    from tuneforge.platform.tracking import ENDED

    client = MlflowClient(saved.tracking_uri)
    experiment_id = client.get_run(saved.parent_run_id).info.experiment_id
    runs = _all_runs(client, experiment_id, f"tags.`{Tags.PARENT_RUN_ID}` = '{saved.parent_run_id}'")
    return frozenset(run.data.tags[Tags.TRIAL_ID] for run in runs
                     if Tags.TRIAL_ID in run.data.tags and Tags.LOST not in run.data.tags
                     and TrialStatus.of_run(run.info.status, run.data.tags) in ENDED)


def find_search(target: str | Path, tracking_uri: str) -> SavedSearch:
    """The search ``target`` names: a results folder holding ``search.json``, else the newest
    interrupted search of the MLflow experiment named ``target`` in ``tracking_uri``.
    ConfigError when there is none."""
    folder = Path(target).expanduser()
    if (folder / Artifacts.SEARCH).is_file():
        path = folder / Artifacts.SEARCH
        return SavedSearch.from_json(path.read_text(), str(path))
    if folder.exists() or "/" in str(target):
        raise ConfigError(f"{target}: no {Artifacts.SEARCH} there; give a search's Ray results folder "
                          "(ray_results/<space>-<algo>-<time>) or its MLflow experiment's name")
    runs = [run for run in list_searches(str(target), tracking_uri) if run.interrupted]
    if not runs:
        raise ConfigError(f"{target}: no interrupted search in MLflow experiment {str(target)!r} at "
                          f"{tracking_uri} (see tuneforge runs {target})")
    saved = runs[0].saved()
    local = Path(saved.local_dir) / Artifacts.SEARCH  # newer: it holds the time budget used
    return SavedSearch.from_json(local.read_text(), str(local)) if local.is_file() else saved


@dataclass(frozen=True)
class SearchRun:
    """One search of an experiment, as ``tuneforge runs`` lists it."""

    run_id: str
    experiment_id: str
    name: str
    status: str
    """MLflow's status, or INTERRUPTED for a RUNNING search whose driver is gone."""
    started_at: float
    n_trials: int
    """Trials recorded in MLflow so far."""
    results: str | None
    """Its Ray results folder (tag :attr:`Tags.RAY_RESULTS`)."""
    client: Any = dataclasses.field(repr=False, compare=False, default=None)

    @property
    def interrupted(self) -> bool:
        return self.status in ("INTERRUPTED", TrialStatus.KILLED.value)

    def saved(self) -> SavedSearch:
        """Its ``search.json``, from the parent run."""
        try:
            text = self.client.download_artifacts(self.run_id, Artifacts.SEARCH)
        except Exception as exc:  # an older search, or a store without its artifacts
            raise ConfigError(f"search {self.name} ({self.run_id}) has no {Artifacts.SEARCH}: it cannot "
                              f"be resumed ({type(exc).__name__})") from None
        return SavedSearch.from_json(Path(text).read_text(), f"run {self.run_id}")


@dataclass(frozen=True)
class NewestSearch:
    """The search a store's newest parent run is: what ``tuneforge server`` links to."""

    experiment_id: str
    run_id: str
    name: str


def newest_search(tracking_uri: str) -> NewestSearch | None:
    """The newest search in the store, of any experiment; None in a new store, or where the
    store cannot be read now (the server is then what says why)."""
    from mlflow import MlflowClient

    from tuneforge.platform._store_writer import store_exists

    try:
        if not store_exists(tracking_uri):
            return None
        client = MlflowClient(tracking_uri)
        experiments = [e.experiment_id for e in client.search_experiments()]
        runs = experiments and client.search_runs(experiments, f"tags.`{Tags.ROLE}` = '{Roles.SEARCH}'",
                                                  order_by=["attributes.start_time DESC"], max_results=1)
    except Exception:  # a link is a convenience: the server starts regardless
        return None
    if not runs:
        return None
    return NewestSearch(runs[0].info.experiment_id, runs[0].info.run_id, runs[0].info.run_name)


def list_searches(experiment: str, tracking_uri: str) -> list[SearchRun]:
    """The searches of ``experiment``, newest first; ConfigError when it does not exist."""
    from mlflow import MlflowClient

    from tuneforge.platform._store_writer import _all_runs, store_exists

    if not store_exists(tracking_uri):
        raise ConfigError(f"--tracking-uri: no MLflow store at {tracking_uri}")
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ConfigError(f"{experiment}: no such MLflow experiment at {tracking_uri}")
    now = time.time()
    runs = _all_runs(client, found.experiment_id, f"tags.`{Tags.ROLE}` = '{Roles.SEARCH}'")
    trials: dict[str, int] = {}
    for run in _all_runs(client, found.experiment_id, f"tags.`{Tags.ROLE}` = '{Roles.TRIAL}'"):
        parent = run.data.tags.get(Tags.PARENT_RUN_ID, "")
        trials[parent] = trials.get(parent, 0) + 1
    listed = []
    for run in runs:
        tags = run.data.tags
        status = run.info.status
        if status == TrialStatus.RUNNING.value and interrupted(status, tags, now):
            status = "INTERRUPTED"
        listed.append(SearchRun(run_id=run.info.run_id, experiment_id=found.experiment_id,
                                name=run.info.run_name, status=status,
                                started_at=run.info.start_time / 1000,
                                n_trials=trials.get(run.info.run_id, 0),
                                results=tags.get(Tags.RAY_RESULTS), client=client))
    return sorted(listed, key=lambda r: r.started_at, reverse=True)
