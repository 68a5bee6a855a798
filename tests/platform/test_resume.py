"""`tuneforge resume` after the driver dies (SIGKILL), is stopped (SIGTERM) or interrupted
(Ctrl-C): exact counts, as Ray's own ``test_tuner_restore`` does. A real driver process is
killed mid-search and resumed; Ray, MLflow and the trials are all real."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import isolated_environment, parent_and_children
from tuneforge.dashboards import build_report
from tuneforge.schema import TrialStatus

TUNEFORGE = str(Path(sys.executable).parent / "tuneforge")
SAVE_EVERY_SECOND = {**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "1"}
"""Ray Tune saves the experiment every second (its default: 10 s or more), so that a test can
kill the driver at a point Tune saved (see _kill_after)."""
N_TRIALS = 8

pytestmark = pytest.mark.own_ray  # each search is a driver process of its own, with its own Ray

SLOW_TRAINABLE = """\
import time

from tuneforge.trainables import report


def train(config):
    time.sleep(1.5)
    report({"score": -(config["x"] - 0.3) ** 2 - 0.1 * config["k"] + (config["pick"] == "b")})
"""

SPACE = """\
trainable: slow.py:train
metric: score
mode: max
params:
  x: {type: float, low: 0.0, high: 1.0}
  k: {type: int, low: 0, high: 3}
  pick: {type: categorical, choices: [a, b]}
"""


def _folder(tmp_path: Path) -> Path:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "slow.py").write_text(SLOW_TRAINABLE)
    (tmp_path / "space.yaml").write_text(SPACE)
    return tmp_path


def _search_args(tmp_path: Path, algo: str, *extra: str) -> list[str]:
    return [TUNEFORGE, "search", str(tmp_path / "space.yaml"), "--algo", algo, "--seed", "3",
            "--trials", "1" if algo == "grid" else str(N_TRIALS), "--max-concurrent", "2",
            "--grid-points", "2", "--tracking-uri", _store(tmp_path),
            "--storage", str(tmp_path / "ray_results"), *extra]


def _store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _trial_runs(tmp_path: Path) -> list:
    """The search's trial runs so far (none while its driver is still creating the store)."""
    try:
        client = MlflowClient(_store(tmp_path))
        experiment = client.get_experiment_by_name("space")
        return client.search_runs([experiment.experiment_id], "tags.`tuneforge.role` = 'trial'")
    except Exception:
        return []


def _tune_trials(tmp_path: Path) -> dict[str, str]:
    """Each trial's status in the experiment as Ray Tune last saved it (what it resumes from)."""
    states = sorted((tmp_path / "ray_results").glob("*/experiment_state-*.json"))
    if not states:
        return {}
    try:
        trials = [json.loads(trial) for trial, _ in json.loads(states[-1].read_text())["trial_data"]]
    except ValueError:  # being written
        return {}
    return {trial["trial_id"]: trial["status"] for trial in trials}


def _ready(tmp_path: Path, ended: int) -> bool:
    """Ray Tune saved ``ended`` trials as ended and another as running, whose run is RUNNING."""
    tune = _tune_trials(tmp_path)
    running = {run.data.tags["tuneforge.trial_id"] for run in _trial_runs(tmp_path)
               if run.info.status == "RUNNING"}
    return list(tune.values()).count("TERMINATED") >= ended and any(
        tune.get(trial_id) == "RUNNING" for trial_id in running)


def _process_groups_started_by(pid: int) -> set[int]:
    """The process groups of ``pid``'s children (a local Ray's processes each lead their own)."""
    groups = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[1]) == pid:  # fields: state, ppid, pgrp, ...
            groups.add(int(fields[2]))
    return groups


def _alive_in(groups: set[int]) -> list[str]:
    """The processes still alive in ``groups``: their names."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        if int(fields[2]) in groups and fields[0] != "Z":
            alive.append(text.split("(", 1)[1].rsplit(")", 1)[0])
    return alive


def _child_named(pid: int, name: str) -> int:
    """The pid of ``pid``'s child process called ``name`` (its local Ray's gcs_server, raylet)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        command, fields = text.split("(", 1)[1].rsplit(")", 1)
        if command == name and int(fields.split()[1]) == pid:
            return int(stat.parent.name)
    raise AssertionError(f"the driver {pid} has no child process {name}")


def _kill_after(process: subprocess.Popen, tmp_path: Path, ended: int, how: signal.Signals,
                group: bool = False, ray_groups: set[int] | None = None, child: str | None = None) -> None:
    """Send ``how`` once Ray Tune saved ``ended`` trials as ended and another as running
    (whose run exists in MLflow, RUNNING): to the driver, its process group (``group``) or its
    child process named ``child``. A SIGKILL loses what Tune did since its last save (a second
    here): a trial it had not saved is not resumed (its run is deleted, or kept as lost)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if _ready(tmp_path, ended):
            # Checked again with the driver stopped, so that the running trial it saw cannot end
            # (in Tune or in MLflow) between the check and the signal.
            process.send_signal(signal.SIGSTOP)
            try:
                if _ready(tmp_path, ended):  # a SIGTERM or SIGINT waits for the SIGCONT
                    if ray_groups is not None:
                        ray_groups.update(_process_groups_started_by(process.pid) - {os.getpgrp()})
                    if child:
                        os.kill(_child_named(process.pid, child), how)
                    else:
                        os.killpg(process.pid, how) if group else process.send_signal(how)
                    return
            finally:
                process.send_signal(signal.SIGCONT)
        time.sleep(0.2)
    raise AssertionError(f"the search never had {ended} trials ended and one running (exit {process.poll()})")


def _interrupt(tmp_path: Path, algo: str, how: signal.Signals, group: bool = False,
               ray_groups: set[int] | None = None, child: str | None = None) -> subprocess.CompletedProcess:
    """The search of ``_search_args``, sent ``how`` after 3 trials: to the driver, to its
    process group (``group``: the driver leads a group of its own, as ``setsid`` makes one), or to
    its child process ``child``. ``ray_groups`` gets the process groups the driver had started
    (its local Ray's)."""
    with open(tmp_path / "first.out", "w") as out, open(tmp_path / "first.err", "w") as err:
        process = subprocess.Popen(_search_args(tmp_path, algo), cwd=tmp_path, stdout=out, stderr=err,
                                   env=SAVE_EVERY_SECOND, start_new_session=group)
        try:
            _kill_after(process, tmp_path, 3, how, group, ray_groups, child)
            process.wait(timeout=180)
        finally:
            process.kill()
    return subprocess.CompletedProcess(process.args, process.returncode, (tmp_path / "first.out").read_text(),
                                       (tmp_path / "first.err").read_text())


def _resume(tmp_path: Path, target: str) -> subprocess.CompletedProcess:
    return subprocess.run([TUNEFORGE, "resume", target, "--tracking-uri", _store(tmp_path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def _results_folder(tmp_path: Path) -> Path:
    [folder] = (tmp_path / "ray_results").iterdir()
    return folder


def _configs(runs: list) -> list[tuple]:
    return [(r.data.params["x"], r.data.params["k"], r.data.params["pick"]) for r in runs]


def _check_complete(tmp_path: Path, n_trials: int) -> tuple:
    """The resumed search holds exactly ``n_trials`` trials, each once, in one parent run."""
    parent, children = parent_and_children(_store(tmp_path), "space")
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["tuneforge.resumes"] == "1"
    assert len(children) == n_trials
    assert len({r.data.tags["tuneforge.trial_id"] for r in children}) == n_trials
    assert len(set(_configs(children))) == n_trials, "no configuration was evaluated twice"
    assert all(r.info.status == "FINISHED" and "score" in r.data.metrics for r in children)
    assert parent.data.metrics["n_trials_finished"] == n_trials
    best = max(r.data.metrics["score"] for r in children)
    assert parent.data.metrics["best_score"] == pytest.approx(best)
    # Tune's own record agrees: n_trials trials, each ended once.
    state = sorted(_results_folder(tmp_path).glob("experiment_state-*.json"))[-1]
    statuses = [json.loads(trial)["status"] for trial, _ in json.loads(state.read_text())["trial_data"]]
    assert statuses == ["TERMINATED"] * n_trials
    return parent, children


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """The random search of ``_search_args`` run to its end, never interrupted, in a folder of its
    own: the configurations a resumed random search must match, and a search with nothing to
    resume. A search in a fresh driver takes tens of seconds: the module runs it once."""
    folder = _folder(tmp_path_factory.mktemp("uninterrupted"))
    with isolated_environment():
        done = subprocess.run(_search_args(folder, "random"), cwd=folder, capture_output=True, text=True,
                              timeout=300)
    return folder, done


@pytest.mark.parametrize("algo", ["random", "bayes",  # make test: a sampled and a model-based one
                                  pytest.param("grid", marks=pytest.mark.full),
                                  pytest.param("optuna-tpe", marks=pytest.mark.full)])
def test_a_killed_driver_is_resumed_with_exact_counts(tmp_path: Path, algo: str, request) -> None:
    _folder(tmp_path)
    ray_groups: set[int] = set()
    first = _interrupt(tmp_path, algo, signal.SIGKILL, ray_groups=ray_groups)
    assert first.returncode == -signal.SIGKILL
    assert ray_groups, "the driver had started its local Ray"
    deadline = time.monotonic() + 30
    while _alive_in(ray_groups) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _alive_in(ray_groups) == [], "nothing of the killed driver's Ray outlives it"
    in_flight = [r for r in _trial_runs(tmp_path) if r.info.status == "RUNNING"]
    assert in_flight, "a trial running when the driver died has its run"
    listing = subprocess.run([TUNEFORGE, "runs", "space", "--tracking-uri", _store(tmp_path)], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert "INTERRUPTED" in listing.stdout
    assert f"tuneforge resume {_results_folder(tmp_path)}" in listing.stdout
    if algo == "random":
        page = build_report("space", tracking_uri=_store(tmp_path), out_dir=tmp_path / "report").read_text()
        assert "status INTERRUPTED" in page and f"tuneforge resume {_results_folder(tmp_path)}" in page

    resumed = _resume(tmp_path, "space")  # by experiment name: its newest interrupted search
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    n_trials = 2 * 2 * 2 if algo == "grid" else N_TRIALS  # --grid-points 2 for x, k and pick
    assert f"Search finished: {n_trials} trials, {n_trials} scored" in resumed.stdout
    _, children = _check_complete(tmp_path, n_trials)
    restarted = [r for r in children if r.info.run_id in {f.info.run_id for f in in_flight}]
    assert restarted and all(r.data.tags.get("tuneforge.restarts") == "1" for r in restarted)
    if algo == "random":  # the configurations the uninterrupted search would have tried
        again, done = request.getfixturevalue("uninterrupted")
        assert done.returncode == 0, done.stderr
        assert sorted(_configs(parent_and_children(_store(again), "space")[1])) == sorted(_configs(children))


@pytest.mark.parametrize(("how", "code", "group"), [
    (signal.SIGTERM, 143, True),  # systemd, SLURM, Kubernetes, `timeout`: the whole process group
    pytest.param(signal.SIGINT, 130, True, marks=pytest.mark.full),  # a terminal's Ctrl-C
    pytest.param(signal.SIGTERM, 143, False, marks=pytest.mark.full)],  # `kill PID`: the driver alone
    ids=["group-sigterm", "group-sigint", "driver-sigterm"])
def test_sigterm_and_ctrl_c_print_the_resume_command_and_one_of_two_resumes_continues(
        tmp_path: Path, how: signal.Signals, code: int, group: bool) -> None:
    _folder(tmp_path)
    first = _interrupt(tmp_path, "random", how, group)
    folder = _results_folder(tmp_path)
    assert first.returncode == code, first.stdout + first.stderr
    assert first.stderr.strip().splitlines()[-2:] == [
        "interrupted: finished trials are recorded in MLflow; continue with:", f"  tuneforge resume {folder}"]
    assert "Traceback" not in first.stderr and "Tuner.restore" not in first.stderr + first.stdout
    assert "*** SIGTERM received" not in first.stderr  # no C++ stack dump
    parent, _ = parent_and_children(_store(tmp_path), "space")
    assert parent.info.status == "KILLED"
    note = parent.data.tags["mlflow.note.content"]  # the run page's description
    assert note.endswith(f"Interrupted; continue with `tuneforge resume {folder}`.")

    # Two resumes of it at once: one runs the search, the other is refused in one line.
    racing = [subprocess.Popen([TUNEFORGE, "resume", str(folder), "--tracking-uri", _store(tmp_path)],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]
    outcomes = sorted((process.wait(timeout=300), *process.communicate()) for process in racing)
    (ran, ran_out, ran_err), (refused, _, refused_err) = outcomes
    assert (ran, refused) == (0, 2), ran_out + ran_err + refused_err
    assert refused_err.count("\n") == 1, refused_err
    assert refused_err.startswith(f"error: search {folder.name} ") and "nothing to resume" in refused_err
    _check_complete(tmp_path, N_TRIALS)


@pytest.mark.parametrize("lost", ["gcs_server", pytest.param("raylet", marks=pytest.mark.full)])
def test_a_search_whose_ray_loses_its_gcs_or_raylet_stops_as_after_sigterm_and_resumes(
        tmp_path: Path, lost: str) -> None:
    # Without the watch, the driver waited 60 s for the GCS and Ray's client ended it: exit 1,
    # Ray's own message, the parent run left RUNNING.
    _folder(tmp_path)
    first = _interrupt(tmp_path, "random", signal.SIGKILL, child=lost)
    folder = _results_folder(tmp_path)
    assert first.returncode == 143, first.stdout + first.stderr
    errors = [line for line in first.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and re.fullmatch(
        rf"error: this search's Ray lost its {lost} \(pid \d+, killed by SIGKILL\); the search stopped",
        errors[0]), first.stderr
    assert first.stderr.strip().splitlines()[-2:] == [
        "interrupted: finished trials are recorded in MLflow; continue with:", f"  tuneforge resume {folder}"]
    assert "Traceback" not in first.stderr and "Failed to connect to GCS" not in first.stderr
    parent, children = parent_and_children(_store(tmp_path), "space")
    assert parent.info.status == "KILLED"
    note = parent.data.tags["mlflow.note.content"]
    assert note.endswith(f"Interrupted; continue with `tuneforge resume {folder}`.")
    assert {r.info.status for r in children} <= {"FINISHED", "KILLED"}
    assert sum(r.info.status == "FINISHED" for r in children) >= 3

    resumed = _resume(tmp_path, str(folder))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    _check_complete(tmp_path, N_TRIALS)


def test_resume_refuses_what_it_cannot_continue(uninterrupted) -> None:
    tmp_path, done = uninterrupted  # a random search of N_TRIALS trials, ended FINISHED
    assert done.returncode == 0, done.stderr
    folder = _results_folder(tmp_path)
    ended = _resume(tmp_path, str(folder))
    assert ended.returncode == 2
    assert ended.stderr.strip() == f"error: search {folder.name} ended FINISHED: nothing to resume"
    missing = _resume(tmp_path, str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "no search.json there" in missing.stderr
    none = _resume(tmp_path, "space")
    assert none.returncode == 2
    assert none.stderr.startswith("error: space: no interrupted search in MLflow experiment 'space'")


def vit_space(folder: Path, epochs: int = 6) -> Path:
    """The bundled vit-digits space, with ``epochs`` epochs a trial (about a second each); a
    search of it that counts epochs gives ``--scheduler none`` (its default, asha, stops some)."""
    from tuneforge.search_spaces import bundled_spaces

    text = bundled_spaces()["vit-digits"].read_text()
    assert "  epochs: 15\n" in text
    path = folder / "vit.yaml"
    path.write_text(text.replace("  epochs: 15\n", f"  epochs: {epochs}\n"))
    return path


def epochs_run(results: Path, trial_id: str) -> list[int]:
    """The epochs a trial ran, in order, as Ray Tune recorded them (``result.json``): a trial
    that went on from its checkpoint does not run its first epochs again."""
    [folder] = [p for p in results.iterdir() if p.is_dir() and f"_{trial_id}_" in p.name]
    return [json.loads(line)["epoch"] for line in (folder / "result.json").read_text().splitlines()]


@pytest.mark.full  # make test: the lost node's trial goes on from its checkpoint (test_cluster.py)
def test_a_torch_trial_killed_mid_search_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    args = [TUNEFORGE, "search", str(vit_space(tmp_path)), "--trials", "2", "--max-concurrent", "1",
            "--seed", "0", "--scheduler", "none", "--experiment", "space", "--tracking-uri", _store(tmp_path),
            "--storage", str(tmp_path / "ray_results")]
    process = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=SAVE_EVERY_SECOND)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            running = [r for r in _trial_runs(tmp_path)
                       if r.info.status == "RUNNING" and r.data.metrics.get("epoch", 0) >= 2]
            if running:  # a trial reported its second epoch, with its checkpoint
                time.sleep(1.2)  # Tune saves the experiment every second
                process.kill()
                break
            time.sleep(0.2)
        process.wait(timeout=60)
    finally:
        process.kill()
    [in_flight] = running
    trial_id = in_flight.data.tags["tuneforge.trial_id"]

    resumed = _resume(tmp_path, "space")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    parent, children = parent_and_children(_store(tmp_path), "space")
    assert parent.info.status == "FINISHED" and len(children) == 2
    client = MlflowClient(_store(tmp_path))
    for run in children:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
        assert sorted(steps) == [1, 2, 3, 4, 5, 6], "each epoch logged once"
    [restarted] = [r for r in children if r.info.run_id == in_flight.info.run_id]
    assert restarted.data.tags["tuneforge.restarts"] == "1"
    assert restarted.info.status == "FINISHED"
    epochs = epochs_run(_results_folder(tmp_path), trial_id)
    assert epochs.count(1) == 1 and epochs.count(6) == 1, f"went on from a checkpoint: {epochs}"


def test_runs_of_trials_tune_never_saved_are_closed_as_lost(tmp_path: Path) -> None:
    """After a SIGKILL, trials that MLflow saw start but Ray Tune had not saved: the resumed
    search's callback closes them at its end (deleted if they reported nothing), and a trial id
    that comes back with another configuration gets a run of its own."""
    from types import SimpleNamespace

    from tuneforge.platform._callbacks import TrialEvents
    from tuneforge.platform.runner import _typed_params
    from tuneforge.platform.tracking import SearchRecorder
    from tuneforge.search_spaces import load_space

    space = load_space(_folder(tmp_path) / "space.yaml")
    first = SearchRecorder(tracking_uri=_store(tmp_path), experiment="space")
    parent = first.start_search(run_name="s", params={}, tags={}, artifacts={})
    for trial_id, x in (("t_00000", 0.1), ("t_00001", 0.2), ("t_00002", 0.3)):
        first.start_trial(trial_id, trial_id, {"x": x, "k": 1, "pick": "a"})
    first.log_metrics("t_00000", {"score": 1.0}, step=1)
    first.log_metrics("t_00002", {"score": 3.0}, step=1)
    first._call("run_ids")  # every write done; then the driver "dies" (no end_search)

    recorder = SearchRecorder(tracking_uri=_store(tmp_path), experiment="space")
    recorder.resume_search(parent, lambda text: _typed_params(space, text))
    assert recorder.trials["t_00002"].params == {"x": 0.3, "k": 1, "pick": "a"}
    events = TrialEvents("s", recorder, space, 3, lambda event: None, tmp_path / "artifacts")
    # Tune suggests t_00002 again with another configuration: it is another trial.
    events.on_trial_start(0, [], SimpleNamespace(trial_id="t_00002", config={"x": 0.9, "k": 2, "pick": "b"}))
    events.on_experiment_end([SimpleNamespace(trial_id="t_00002", status="RUNNING")])
    recorder.end_search(TrialStatus.KILLED, metrics={}, tags={}, artifacts={})

    client = MlflowClient(_store(tmp_path))
    runs = client.search_runs([client.get_experiment_by_name("space").experiment_id],
                              "tags.`tuneforge.role` = 'trial'")
    by_id = {(r.data.tags["tuneforge.trial_id"], r.data.params["x"]): r for r in runs}
    assert set(by_id) == {("t_00000", "0.1"), ("t_00002", "0.3"), ("t_00002", "0.9")}, "t_00001 deleted"
    for key in (("t_00000", "0.1"), ("t_00002", "0.3")):
        assert by_id[key].info.status == "KILLED"
        assert by_id[key].data.tags["tuneforge.lost"].startswith("Ray Tune had not saved this trial")
        assert by_id[key].data.metrics["score"] in (1.0, 3.0), "a lost run keeps what it reported"
    assert "tuneforge.lost" not in by_id[("t_00002", "0.9")].data.tags


@pytest.mark.parametrize("algo", ["bayes", pytest.param("random", marks=pytest.mark.full)])
def test_a_search_whose_saved_state_is_damaged_is_rebuilt_from_mlflow_keeping_its_finished_trials(
        tmp_path: Path, algo: str) -> None:
    _folder(tmp_path)
    first = _interrupt(tmp_path, algo, signal.SIGKILL)
    assert first.returncode == -signal.SIGKILL
    folder = _results_folder(tmp_path)
    [snapshot] = folder.glob("experiment_state-*.json")
    whole = snapshot.read_bytes()
    snapshot.write_bytes(whole[: len(whole) // 2])  # as a driver killed while writing it leaves it
    before = {r.info.run_id: r for r in _trial_runs(tmp_path)}
    finished = {run_id for run_id, r in before.items() if r.info.status == "FINISHED"}
    assert len(finished) >= 3

    command = [TUNEFORGE, "resume", str(folder), "--tracking-uri", _store(tmp_path)]
    if algo == "random":  # the rebuilt search killed in turn, then resumed as any other
        with open(tmp_path / "rebuilt.out", "w") as out:
            rebuilding = subprocess.Popen(command, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                                          env=SAVE_EVERY_SECOND)
            try:
                _kill_after(rebuilding, tmp_path, 2, signal.SIGKILL)
                rebuilding.wait(timeout=60)
            finally:
                rebuilding.kill()
        rebuilt_output = (tmp_path / "rebuilt.out").read_text()
    resumed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    if algo != "random":
        rebuilt_output = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"saved state of search {folder.name}: {snapshot} is damaged (JSONDecodeError: " in rebuilt_output
    assert "the search is rebuilt from MLflow and search.json" in rebuilt_output
    assert (folder / f"{snapshot.name}.damaged").read_bytes() == whole[: len(whole) // 2]
    assert (folder / "tuner.pkl.damaged").exists(), "set aside: the rebuilt search wrote its own"
    saved = json.loads((folder / "search.json").read_text())
    assert saved["rebuilds"] == 1 and sorted(saved["kept_trials"]) == sorted(
        before[run_id].data.tags["tuneforge.trial_id"] for run_id in finished)
    parent, children = parent_and_children(_store(tmp_path), "space")
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["tuneforge.rebuilt"].startswith(
        f"its Ray Tune state was damaged: rebuilt from MLflow and search.json (1 time(s)), {len(finished)} "
        "ended trials kept (the scored ones as warm-start observations)")
    after = {r.info.run_id: r for r in children}
    for run_id in finished:  # never re-marked, nor run again
        assert after[run_id].info.status == "FINISHED"
        assert after[run_id].info.end_time == before[run_id].info.end_time
        assert "tuneforge.lost" not in after[run_id].data.tags
    counted = [r for r in children if "tuneforge.lost" not in r.data.tags]
    assert len(counted) == N_TRIALS and all(r.info.status == "FINISHED" for r in counted)
    assert len(set(_configs(counted))) == N_TRIALS, "no configuration was evaluated twice"
    assert parent.data.metrics["n_trials_finished"] == N_TRIALS
    assert parent.data.metrics["best_score"] == pytest.approx(max(r.data.metrics["score"] for r in counted))
    for run in children:
        if "tuneforge.lost" in run.data.tags:  # was running: closed, its configuration ran anew or not
            assert run.info.run_id not in finished and run.info.status == "KILLED"
            assert run.data.tags["tuneforge.lost"].startswith(
                "the search's Ray Tune state was damaged" if run.info.run_id in before
                else "Ray Tune had not saved this trial")  # the rebuilt search's, killed in turn
