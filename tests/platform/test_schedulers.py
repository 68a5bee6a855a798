"""Early stopping in real searches on a local Ray: every scheduler with every algorithm, STOPPED
trials in MLflow, the summary and the report, and a ViT search under ASHA."""

from __future__ import annotations

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
    assert f"8 trials, 8 scored, {len(stopped)} stopped early, 0 failed." in capsys.readouterr().out
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
