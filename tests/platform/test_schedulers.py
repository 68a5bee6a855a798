"""Early stopping in real searches on a local Ray: every scheduler with every algorithm, STOPPED
trials in MLflow, the summary and the report, and a ViT search under ASHA."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from mlflow import MlflowClient

import tuneforge
from tests.conftest import parent_and_children, write_space
from tuneforge.platform.cli import main
from tuneforge.schema import Metrics, Tags, TrialStatus

CURVES = """\
import json
import tempfile
from pathlib import Path

from tuneforge.trainables import report, restored_checkpoint


def train(config):
    # A learning curve that rises to a final value peaked at x = 0.7; resumable, as HyperBand
    # pauses trials and resumes them from their checkpoints.
    with restored_checkpoint() as folder:
        start = json.loads((folder / "state.json").read_text())["epoch"] + 1 if folder else 1
    for epoch in range(start, 5):
        with tempfile.TemporaryDirectory() as checkpoint:
            (Path(checkpoint) / "state.json").write_text(json.dumps({"epoch": epoch}))
            score = (1 - (config["x"] - 0.7) ** 2) * (1 - 0.5 ** epoch)
            report({"score": score}, checkpoint=checkpoint)
"""

CURVES_SPACE = """\
trainable: curves.py:train
metric: score
mode: max
max_epochs: 4
params:
  x: {type: float, low: 0.0, high: 1.0}
"""


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory) -> str:
    """One MLflow store for the matrix below (an experiment per search): creating a SQLite
    store takes seconds."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


ALGOS = ["grid", "random", "bayes", "optuna-tpe", "optuna-gp"]
SCHEDULERS = ["hyperband", "asha", "median"]
ONCE_EACH = {("hyperband", "grid"), ("hyperband", "optuna-gp"), ("asha", "random"), ("asha", "optuna-tpe"),
             ("median", "bayes")}
"""``make test`` runs each scheduler and each algorithm once; ``make test-all`` every pair. HyperBand
pauses trials and resumes them from their checkpoints, which each searcher meets in its own way;
ASHA and the median rule only stop trials, which Tune tells every searcher as an early completion."""
PAIRS = [pytest.param(scheduler, algo, id=f"{scheduler}-{algo}",
                      marks=[] if (scheduler, algo) in ONCE_EACH else [pytest.mark.full])
         for scheduler in SCHEDULERS for algo in ALGOS]


@pytest.mark.parametrize(("scheduler", "algo"), PAIRS)
def test_schedulers_work_with_the_algorithms(ray_local, shared_store, tmp_path, scheduler, algo) -> None:
    write_space(tmp_path, CURVES, "curves.py")
    space = write_space(tmp_path, CURVES_SPACE)
    experiment = f"{scheduler}-{algo}"
    result = tuneforge.search(space, algo=algo, trials=None if algo == "grid" else 5, seed=0, grid_points=5,
                              scheduler=scheduler, tracking_uri=shared_store, storage=tmp_path / "ray",
                              experiment=experiment)
    assert result.status is TrialStatus.FINISHED and len(result.trials) == 5
    statuses = {t.status for t in result.trials}
    assert statuses <= {TrialStatus.FINISHED, TrialStatus.STOPPED}, statuses
    for trial in result.trials:  # a stopped trial ended before the last epoch, the others at it
        assert (trial.iterations < 4) == (trial.status is TrialStatus.STOPPED), trial
    parent, children = parent_and_children(shared_store, experiment)
    assert parent.data.params["scheduler"] == scheduler and parent.data.params["max_epochs"] == "4"
    stopped = [c for c in children if c.data.tags.get(Tags.STATUS) == "STOPPED"]
    assert parent.data.metrics[Metrics.N_TRIALS_STOPPED] == len(stopped)
    assert parent.data.metrics[Metrics.TOTAL_ITERATIONS] == sum(t.iterations for t in result.trials)


def test_an_asha_search_of_the_vit_records_its_stopped_trials(ray_local, tmp_path, monkeypatch,
                                                              capsys) -> None:
    from tuneforge.dashboards import build_report

    monkeypatch.chdir(tmp_path)
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = main(["search", "vit-digits", "--algo", "random", "--trials", "8", "--seed", "0", "--smoke",
                 "--scheduler", "asha", "--tracking-uri", tracking_uri])
    assert code == 0
    parent, children = parent_and_children(tracking_uri, "vit-digits")
    client = MlflowClient(tracking_uri)
    stopped = [c for c in children if c.data.tags.get(Tags.STATUS) == TrialStatus.STOPPED.value]
    assert len(children) == 8 and 1 <= len(stopped) < 8
    for child in stopped:  # stopped at the rung (epoch 1 of 2): MLflow's FINISHED, and no model
        assert child.info.status == "FINISHED" and child.data.tags[Tags.STOPPED_AT] == "1"
        assert child.data.metrics["epoch"] == 1.0
        assert not [a for a in client.list_artifacts(child.info.run_id) if a.path == "model"]
    finished = [c for c in children if c not in stopped]
    assert all(c.data.metrics["epoch"] == 2.0 and Tags.STATUS not in c.data.tags for c in finished)
    assert parent.data.metrics[Metrics.N_TRIALS_STOPPED] == len(stopped)
    assert parent.data.metrics[Metrics.TOTAL_ITERATIONS] == len(stopped) + 2 * len(finished)
    out = capsys.readouterr().out
    assert f"8 trials, 8 scored, {len(stopped)} stopped early, 0 failed." in out
    assert "Smoke search: " in out and "choose no model. Drop --smoke for a real search." in out
    html = build_report("vit-digits", tracking_uri=tracking_uri, out_dir=tmp_path / "report").read_text()
    epochs = len(stopped) + 2 * len(finished)
    assert f"8 trials ({len(stopped)} stopped early, {epochs} epochs in all)" in html


def test_a_stopped_trial_s_result_is_its_last(ray_local, tracking_uri: str, tmp_path: Path) -> None:
    """The one rule for "the trial's result": its last report, in the summary, the parent run
    and the searchers alike (a stopped trial's is the one at the epoch it was stopped)."""
    write_space(tmp_path, CURVES, "curves.py")
    space = write_space(tmp_path, CURVES_SPACE)
    result = tuneforge.search(space, algo="random", trials=6, seed=1, scheduler="asha",
                              tracking_uri=tracking_uri, storage=tmp_path / "ray")
    client = MlflowClient(tracking_uri)
    for trial in result.trials:
        history = client.get_metric_history(trial.run_id, "score")
        assert trial.metrics["score"] == max(history, key=lambda m: m.step).value
    parent, _ = parent_and_children(tracking_uri, "space")
    assert parent.data.metrics["best_score"] == max(t.metrics["score"] for t in result.trials)


# -- a space that searches epochs: rungs at fractions of each trial's own schedule (no Ray) --------

EPOCHS_SEARCHED = """\
trainable: vit
metric: val_accuracy
mode: max
grace_period: 2
config: {dataset: digits, patch_size: 4}
params:
  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
  epochs: {type: int, low: 8, high: 24}
"""


def _plan(tmp_path: Path, space: str, **options):
    from tuneforge.platform.planning import SearchOptions, plan_search

    return plan_search(write_space(tmp_path, space), SearchOptions(
        algo="bayes", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", **options))


class _Trial:
    """What Ray's ASHA reads of a trial: its id."""

    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


def _feed(scheduler, trial: _Trial, epochs: int, curve: list[float]) -> int:
    """Report ``curve`` (one value an epoch) to ``scheduler`` as a torch trial of ``epochs``
    epochs does; the epoch it was stopped at, or its last."""
    from ray.tune.schedulers import TrialScheduler

    scheduler.on_trial_add(None, trial)
    for epoch, value in enumerate(curve, start=1):
        result = {"val_accuracy": value, "epoch": float(epoch), "progress": epoch / epochs}
        if scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP:
            return epoch
    return len(curve)


def test_asha_compares_trials_of_searched_epochs_at_the_same_point_of_their_schedules(tmp_path) -> None:
    plan = _plan(tmp_path, EPOCHS_SEARCHED)
    schedule = plan.schedule
    assert (schedule.name, schedule.fewest_epochs, schedule.max_epochs) == ("asha", 8, 24)
    assert schedule.describe() == "asha (rungs at 25% and 75% of each trial's epochs, 8-24)"
    assert plan.setup.make_search_alg(None).step_metric == "progress", "the GP's rule on stopped trials too"
    scheduler = schedule.build()
    scheduler.set_search_properties("val_accuracy", "max")
    # An 8-epoch trial cools its learning rate early: at epoch 2 it is ahead of a 24-epoch trial of
    # the same config, which ends better. At the same epoch ASHA would stop the longer one there.
    short = [0.90, 0.94, 0.96, 0.97, 0.975, 0.978, 0.979, 0.980]
    long = [0.89, 0.92, 0.93, 0.94, 0.95, 0.955, 0.96, 0.965, 0.97, 0.972, 0.975, 0.977,
            0.979, 0.980, 0.981, 0.982, 0.983, 0.984, 0.985, 0.986, 0.986, 0.987, 0.987, 0.988]
    assert _feed(scheduler, _Trial("short"), 8, short) == 8
    assert _feed(scheduler, _Trial("long"), 24, long) == 24, "met at epoch 6 (25%) against epoch 2's 0.94"
    worse = [0.80, 0.85, 0.88, 0.90, 0.91, 0.92, 0.93, 0.94]
    assert _feed(scheduler, _Trial("worse"), 8, worse) == 2, "behind both at 25% of its epochs"
    by_epoch = dataclasses.replace(schedule, fewest_epochs=None).build()
    by_epoch.set_search_properties("val_accuracy", "max")
    assert _feed(by_epoch, _Trial("short"), 8, short) == 8
    assert _feed(by_epoch, _Trial("long"), 24, long) == 2, "what counting epochs would do"


def test_a_fixed_epochs_space_keeps_asha_s_epoch_rungs(tmp_path) -> None:
    plan = _plan(tmp_path, EPOCHS_SEARCHED.replace("  epochs: {type: int, low: 8, high: 24}\n", "")
                 .replace("patch_size: 4}", "patch_size: 4, epochs: 8}"))
    assert plan.schedule.fewest_epochs is None and plan.schedule.describe() == "asha (grace 2, max 8 epochs)"
    assert plan.setup.make_search_alg(None).step_metric == "epoch"
    smoke = _plan(tmp_path, EPOCHS_SEARCHED, smoke=True)
    assert smoke.schedule is None, "--smoke searches run without a scheduler"


def test_a_grace_period_beyond_the_fewest_searched_epochs_is_refused(tmp_path) -> None:
    from tuneforge.errors import ConfigError

    with pytest.raises(ConfigError, match="grace_period 10 is more than the fewest epochs a trial runs"):
        _plan(tmp_path, EPOCHS_SEARCHED.replace("grace_period: 2", "grace_period: 10"))


class _Controller:
    """What Ray's HyperBand asks of Tune's controller when a bracket ends: to stop a trial."""

    def __init__(self) -> None:
        self.stopped: list[str] = []

    def stop_trial(self, trial) -> None:
        from ray.tune.experiment import Trial

        self.stopped.append(trial.trial_id)
        trial.temporary_state.saving_to = None
        trial.set_status(Trial.TERMINATED)


def test_hyperband_stops_a_trial_still_saving_when_its_bracket_ends() -> None:
    """The race that hung a CI run (Ray 2.60, ``_ray_fixes``): two trials reach the end of their
    bracket together; the first is told to pause and is still saving when the second's result ends
    the bracket. Stopped then, else it pauses in a bracket that never resumes it and Tune waits
    forever. Real Ray trials and scheduler; the race is set up by hand, as it only happens under
    load."""
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler

    from tuneforge.platform import _ray_fixes
    from tuneforge.platform.schedulers import Schedule

    _ray_fixes.install()
    scheduler = Schedule(name="hyperband", max_epochs=4, grace_period=1).build()
    scheduler.set_search_properties("score", "max")
    first, second = Trial("curves", stub=True), Trial("curves", stub=True)
    controller = _Controller()
    for trial in (first, second):  # the first bracket: two trials, no halving, to epoch 4
        scheduler.on_trial_add(controller, trial)
        trial.set_status(Trial.RUNNING)
    for epoch in (1, 2, 3):
        for trial in (first, second):
            result = {"score": 0.5, "training_iteration": epoch}
            assert scheduler.on_trial_result(controller, trial, result) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(controller, first, {"score": 0.6, "training_iteration": 4}) \
        == TrialScheduler.PAUSE, "the other has not reached the bracket's end"
    first.temporary_state.saving_to = object()  # Tune saves it before it is PAUSED
    assert scheduler.on_trial_result(controller, second, {"score": 0.7, "training_iteration": 4}) \
        == TrialScheduler.STOP
    assert controller.stopped == [first.trial_id] and first.status == Trial.TERMINATED
