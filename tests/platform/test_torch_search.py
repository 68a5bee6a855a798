"""Real searches of per-epoch and user trainables on a local Ray, recorded in a real MLflow store:
per-epoch metrics and artifacts, the trained model in MLflow, storage folders and URIs."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

import tuneforge
from tests.conftest import USER_SPACE, parent_and_children, write_space
from tuneforge.schema import Tags, TrialStatus
from tuneforge.trainables.images import load_image_dataset

USER_TRAINABLE = """\
from tuneforge.trainables import report


def train(config):
    for step in range(3):
        report({"score": -(config["x"] - 0.3) ** 2 + step, "step_seen": step})


def train_without_the_metric(config):
    report({"other": config["x"]})


not_a_function = 3
"""

CRASHING_ONCE = """\
import json
import os
import tempfile
from pathlib import Path

from tuneforge.trainables import report, restored_checkpoint


def train(config):
    with restored_checkpoint() as folder:
        start = json.loads((folder / "state.json").read_text())["step"] + 1 if folder else 1
    for step in range(start, 4):
        with tempfile.TemporaryDirectory() as checkpoint:
            (Path(checkpoint) / "state.json").write_text(json.dumps({"step": step}))
            report({"score": float(step), "started_at_step": float(start)}, checkpoint=checkpoint)
        if step == 1 and start == 1:
            os._exit(1)  # the worker dies after its first checkpoint
"""


def _artifacts(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, path)}


def test_vit_smoke_search_logs_each_epoch_and_a_model_that_predicts_raw_images(
        smoke_search, tmp_path: Path) -> None:
    import mlflow
    import torch

    searched = smoke_search("vit-digits")
    result, tracking_uri = searched.result, searched.tracking_uri
    parent, children = parent_and_children(tracking_uri, "vit-digits")
    client = MlflowClient(tracking_uri)
    assert result.status is TrialStatus.FINISHED and len(children) == 2
    # Named by trial number and searched values, as the MLflow UI's run list shows them.
    assert sorted(c.info.run_name.split(": ")[0] for c in children) == ["trial 1", "trial 2"]
    assert all(" weight_decay=" in c.info.run_name and c.info.run_name.split(": ")[1].startswith("lr=")
               for c in children)
    for child in children:
        assert child.info.status == "FINISHED"
        history = client.get_metric_history(child.info.run_id, "val_accuracy")
        assert sorted(m.step for m in history) == [1, 2], "one value per epoch, at its epoch"
        assert {"train_loss", "val_loss", "samples_per_s", "peak_rss_mb", "epoch"} <= set(child.data.metrics)
        system = {k: v for k, v in child.data.metrics.items() if k.startswith("system/")}  # the UI's tab
        assert set(system) == {"system/process_cpu_utilization_percentage",
                               "system/process_memory_rss_megabytes", "system/system_memory_usage_megabytes",
                               "system/system_memory_usage_percentage"}
        assert 0 < system["system/process_cpu_utilization_percentage"] <= 100 * os.cpu_count() + 1
        assert 100 < system["system/process_memory_rss_megabytes"] <= child.data.metrics["peak_rss_mb"] + 1
        assert 0 < system["system/system_memory_usage_percentage"] < 100
        assert len(client.get_metric_history(child.info.run_id, "system/process_memory_rss_megabytes")) == 2
        assert _artifacts(client, child.info.run_id, "confusion_matrix") == {
            "confusion_matrix/epoch-0001.png", "confusion_matrix/epoch-0002.png"}
        assert "model/MLmodel" in _artifacts(client, child.info.run_id, "model")

    assert result.model_uri == f"runs:/{result.best.run_id}/model"
    assert parent.data.tags["tuneforge.best_model_uri"] == result.model_uri
    mlflow.set_tracking_uri(tracking_uri)
    info = mlflow.models.get_model_info(result.model_uri)
    assert tuple(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == (-1, 1, 8, 8)
    model = mlflow.pytorch.load_model(result.model_uri)
    test = load_image_dataset("digits")
    raw = torch.from_numpy(np.asarray(test.test_images[:16], dtype=np.float32) / 255.0)
    logits = model(raw)
    assert logits.shape == (16, 10) and torch.isfinite(logits).all()
    assert not model.training, "loaded in eval mode"
    assert model.eval().to("cpu") is model and torch.equal(model(raw), logits), "a plain torch module"
    best_metrics = MlflowClient(tracking_uri).get_run(result.best.run_id).data.metrics
    assert best_metrics["n_params"] == sum(p.numel() for p in model.parameters()), "the logged model's size"
    assert best_metrics["latency_ms"] > 0, "one image's inference was timed"
    with pytest.raises(ValueError, match=r"^this model takes images of shape \(N, 1, 8, 8\) with values "
                                         r"in \[0, 1\]; got \(16, 1, 28, 28\)$"):
        model(torch.rand(16, 1, 28, 28))

    from tuneforge.dashboards import build_report

    page = build_report("vit-digits", tracking_uri=tracking_uri, out_dir=tmp_path / "report",
                        log_to_mlflow=False).read_text()  # the smoke search is shared: read it only
    assert "Learning curves (max val_accuracy" in page
    assert "Best trial: confusion_matrix (2 pictures)" in page and "confusion_matrix/epoch-0002.png" in page


def test_checkpoints_go_to_a_file_uri_storage_and_artifacts_stay_local(
        ray_local, tracking_uri: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    storage = (tmp_path / "shared-storage").as_uri()
    result = tuneforge.search("vit-digits", algo="random", trials=1, seed=1, smoke=True,
                              tracking_uri=tracking_uri, storage=storage)
    assert result.status is TrialStatus.FINISHED
    assert result.experiment_path.startswith(storage + "/")
    experiment = tmp_path / "shared-storage" / result.experiment_path.rsplit("/", 1)[-1]
    checkpoints = sorted(p.name for p in experiment.glob("*/checkpoint_*"))
    assert checkpoints == ["checkpoint_000000", "checkpoint_000001"], "the last and best of 2 kept"
    parent, [child] = parent_and_children(tracking_uri, "vit-digits")
    assert parent.data.tags["tuneforge.ray_results"] == result.experiment_path
    assert "model/MLmodel" in _artifacts(MlflowClient(tracking_uri), child.info.run_id, "model")


def test_storage_on_a_second_local_folder(ray_local, tracking_uri: str, tmp_path: Path) -> None:
    result = tuneforge.search("ridge-diabetes", trials=2, seed=0, tracking_uri=tracking_uri,
                              storage=tmp_path / "elsewhere")
    experiment = Path(result.experiment_path)
    assert experiment.parent == tmp_path / "elsewhere"
    assert len(list(experiment.glob("*/result.json"))) == 2
    assert len(list((experiment / "artifacts").iterdir())) == 2, "each trial's artifacts arrived"


def test_sklearn_best_config_is_refitted_logged_as_a_model_and_registered(ray_local, tracking_uri,
                                                                          tmp_path) -> None:
    import mlflow
    from sklearn.datasets import load_digits

    result = tuneforge.search("rf-digits", trials=2, seed=2, tracking_uri=tracking_uri,
                              storage=tmp_path / "ray", register_model="rf-digits-best")
    assert result.model_uri == f"runs:/{result.best.run_id}/model"
    [version] = MlflowClient(tracking_uri).search_model_versions("name='rf-digits-best'")
    assert version.run_id == result.best.run_id and str(version.version) == "1"
    [parent] = MlflowClient(tracking_uri).search_runs(
        [result.experiment_id], "tags.`tuneforge.role` = 'search'")
    assert parent.data.tags["tuneforge.registered_model"] == "rf-digits-best/1"
    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.sklearn.load_model(result.model_uri)  # a forest: skops must trust its Tree
    X, y = load_digits(return_X_y=True)
    assert model.predict(X[:5]).shape == (5,) and (model.predict(X) == y).mean() > 0.9
    assert model.get_params()["n_estimators"] == result.best_config["n_estimators"]
    assert model.get_params()["random_state"] == 0, "the space's fixed settings are kept"


def test_a_user_trainable_from_a_file_beside_the_space(ray_local, tracking_uri, tmp_path) -> None:
    (tmp_path / "my_trainable.py").write_text(USER_TRAINABLE)
    space = write_space(tmp_path, USER_SPACE.format(reference="my_trainable.py:train"))
    result = tuneforge.search(space, trials=3, seed=0, tracking_uri=tracking_uri, storage=tmp_path / "ray")
    parent, children = parent_and_children(tracking_uri, "space")
    assert result.status is TrialStatus.FINISHED and len(children) == 3
    assert all(child.info.status == "FINISHED" for child in children)
    client = MlflowClient(tracking_uri)
    assert all(len(client.get_metric_history(c.info.run_id, "score")) == 3 for c in children)
    assert result.best_score == max(c.data.metrics["score"] for c in children)
    assert parent.data.params["trainable"] == "my_trainable.py:train"


def train_from_python(config: dict) -> None:
    from ray import tune

    tune.report({"score": config["x"]})


def test_a_user_trainable_passed_from_python(ray_local, tracking_uri, tmp_path) -> None:
    space = write_space(tmp_path, USER_SPACE.format(reference="ignored:train"))
    result = tuneforge.search(space, trainable=train_from_python, trials=2, seed=0,
                              tracking_uri=tracking_uri, storage=tmp_path / "ray")
    assert result.status is TrialStatus.FINISHED
    assert [t.metrics["score"] for t in result.trials] == [t.params["x"] for t in result.trials]


def test_a_user_trainable_that_never_reports_the_metric_stops_the_search_after_its_first_trial(
        ray_local, tracking_uri, tmp_path, monkeypatch, capsys) -> None:
    from tuneforge.platform.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_trainable.py").write_text(USER_TRAINABLE)
    space = write_space(tmp_path, USER_SPACE.format(reference="my_trainable.py:train_without_the_metric"))
    code = main(["search", str(space), "--trials", "6", "--seed", "0", "--tracking-uri", tracking_uri])
    assert code == 1, "no trial scored"
    out = capsys.readouterr().out
    parent, children = parent_and_children(tracking_uri, "space")
    # Two trials at once (2 CPUs): the first to end stops the search; the other ends with it.
    assert 1 <= len(children) <= 2 and f"Search failed: {len(children)} trials, 0 scored" in out
    assert parent.info.status == "FAILED" and parent.data.metrics["n_trials_finished"] == 0
    reason = parent.data.tags[Tags.STOPPED_BECAUSE]
    assert re.fullmatch(r"trial \w+_\d+: trainable never reported the space's metric 'score' \(it reported: "
                        r"other\); the search stopped after it, as the other trials run the same function",
                        reason), reason
    assert f"Stopped early: {reason}." in out and f"Stopped early: {reason}." in parent.data.tags[Tags.NOTE]
    first = [c for c in children if c.data.tags.get("tuneforge.error")]
    assert first and {c.info.status for c in first} == {"FAILED"}
    assert {c.data.tags["tuneforge.error"] for c in first} == {
        "trainable never reported the space's metric 'score' (it reported: other)"}


def test_a_trial_whose_worker_died_restarts_from_its_checkpoint(ray_local, tracking_uri, tmp_path) -> None:
    (tmp_path / "crashing.py").write_text(CRASHING_ONCE)
    space = write_space(tmp_path, USER_SPACE.format(reference="crashing.py:train"))
    result = tuneforge.search(space, trials=1, seed=0, max_failures=1, tracking_uri=tracking_uri,
                              storage=tmp_path / "ray")
    [trial] = result.trials
    assert trial.status is TrialStatus.FINISHED and trial.n_restarts == 1
    assert trial.metrics["score"] == 3.0 and trial.metrics["started_at_step"] == 2.0, "resumed at step 2"
    _, [child] = parent_and_children(tracking_uri, "space")
    history = MlflowClient(tracking_uri).get_metric_history(child.info.run_id, "score")
    assert sorted((m.step, m.value) for m in history) == [(1, 1.0), (2, 2.0), (3, 3.0)]


NAN_SOMETIMES = """\
from tuneforge.trainables import report


def train(config):
    report({"score": float("nan") if config["x"] > 0.5 else config["x"]})
"""


def test_a_trial_whose_metric_is_nan_has_no_score_and_says_why(ray_local, tracking_uri, tmp_path,
                                                               monkeypatch, capsys) -> None:
    from tuneforge.platform.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "nan.py").write_text(NAN_SOMETIMES)
    space = write_space(tmp_path, USER_SPACE.format(reference="nan.py:train"))
    assert main(["search", str(space), "--trials", "6", "--seed", "3", "--tracking-uri", tracking_uri]) == 0
    parent, children = parent_and_children(tracking_uri, "space")
    nan = [c for c in children if float(c.data.params["x"]) > 0.5]
    assert nan and all(c.info.status == "FINISHED" for c in children)
    assert {c.data.tags.get("tuneforge.no_score") for c in nan} == {"its last score was nan"}
    assert all("tuneforge.no_score" not in c.data.tags for c in children if c not in nan)
    scored = len(children) - len(nan)
    assert parent.data.metrics["n_trials_finished"] == scored
    assert (f"6 trials, {scored} scored, 0 stopped early, 0 failed, {len(nan)} without a score "
            "(a NaN or infinite score).") in capsys.readouterr().out
