"""Data-parallel trials: a vit-digits trial on 2 Ray Train workers (gloo, 1 CPU each) in a real
Tuner, on the suite's 2-CPU Ray, and how the epoch loop shares an epoch among workers."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ray import tune

from tuneforge.platform.data_parallel import data_parallel
from tuneforge.search_spaces import load_space
from tuneforge.trainables import get_trainable
from tuneforge.trainables._session import complete_batches, open_inbox, ship_by_value

EXPERIMENT = "data-parallel"
EPOCHS = 3


def _vit_lost_after_epoch_2(config: dict[str, Any]) -> None:
    """What each worker runs: ``train_vit``, whose first attempt dies once epoch 2 is reported
    (its node lost, say), so Tune restarts the trial and the trial's Train run resumes."""
    import ray.train

    from tuneforge.trainables.vit.trainable import train_vit

    if ray.train.get_checkpoint() is None:
        train_vit({**config, "epochs": 2})
        raise RuntimeError("the trial's node was lost")
    train_vit(config)


class _Results(tune.Callback):
    """Every result Tune received, in order."""

    def __init__(self) -> None:
        self.results: list[dict[str, Any]] = []

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.results.append(result)


@pytest.fixture
def vit_config() -> dict[str, Any]:
    """vit-digits' prepared fixed config at the space's centre, all of the digits, 3 epochs."""
    space = load_space("vit-digits")
    trainable = get_trainable(space.trainable)
    return {**trainable.prepare(space), **space.decode(np.full(space.n_dims, 0.5)), "epochs": EPOCHS}


def _fit(trainable: Any, config: dict[str, Any], storage: Path, results: _Results) -> Any:
    tuner = tune.Tuner(
        trainable, param_space=config,
        tune_config=tune.TuneConfig(metric="val_accuracy", mode="max", reuse_actors=False),
        run_config=tune.RunConfig(name=EXPERIMENT, storage_path=str(storage), verbose=0, callbacks=[results],
                                  failure_config=tune.FailureConfig(max_failures=1)))
    [result] = tuner.fit()
    return result


@pytest.mark.full  # make test: the data-parallel search below (a minute each on 2 CPUs)
@pytest.mark.timeout(300)
def test_a_trial_on_two_workers_reports_each_epoch_and_resumes_its_train_run(
        ray_local, vit_config, tmp_path, monkeypatch) -> None:
    """On the suite's 2-CPU Ray the workers take both CPUs (a driver asking for any would never
    start them). The first attempt dies after epoch 2; Tune restarts the trial, whose Train run
    (same name) resumes. Checkpoints are ranked by ``epoch``, so which one is kept is known."""
    import torch

    monkeypatch.setenv("RAY_AIR_NEW_OUTPUT", "0")  # no Tune banner or tables, as the runner runs it
    ship_by_value(sys.modules[__name__])  # the workers run this file's function
    storage, artifacts, results = tmp_path / "ray", tmp_path / "artifacts", _Results()
    trainable = data_parallel(_vit_lost_after_epoch_2, workers=2, cpus_per_worker=1, gpus_per_worker=0,
                              storage=storage, keep_checkpoints=1, metric="epoch", mode="max")
    inbox = open_inbox(EXPERIMENT, artifacts)
    try:
        result = _fit(trainable, vit_config, storage, results)
    finally:
        ray_local.kill(inbox)

    assert result.error is None
    # Epochs 1 and 2, the restart, then epoch 3 from epoch 2's checkpoint (not epoch 1 again).
    assert [r["epoch"] for r in results.results] == [1.0, 2.0, 3.0]
    assert [r["training_iteration"] for r in results.results] == [1, 2, 1], "Tune holds no checkpoint"
    for r in results.results:
        assert (r["workers"], r["device"]) == (2.0, "cpu")
        assert 0.0 <= r["val_accuracy"] <= 1.0 and math.isfinite(r["train_loss"])
        assert r["checkpoint_path"].startswith(str(storage / EXPERIMENT))
    # keep_checkpoints=1, the best by epoch: the Train run keeps epoch 3's alone.
    trial_id = results.results[0]["trial_id"]
    train_run = storage / EXPERIMENT / f"{EXPERIMENT}-{trial_id}"
    [kept] = [path for path in train_run.glob("checkpoint_*") if path.is_dir()]
    assert torch.load(kept / "state.pt", weights_only=False)["epoch"] == 3
    # Rank 0 alone sends artifacts: one batch per epoch, not one per worker.
    batches = complete_batches(artifacts / trial_id)
    assert [sorted(p.name for p in (b / "confusion_matrix").iterdir()) for b in batches] == \
           [[f"epoch-{epoch:04d}.png"] for epoch in (1, 2, 3)]
    assert (batches[-1] / "model" / "MLmodel").is_file()


def test_the_driver_asks_tune_for_no_cpu() -> None:
    trainable = data_parallel(_vit_lost_after_epoch_2, workers=2, cpus_per_worker=1, gpus_per_worker=0,
                              storage="/tmp", keep_checkpoints=1, metric="val_accuracy", mode="max")
    assert trainable._resources.required_resources == {"memory": 1.0}  # what tune.with_resources set
    assert trainable.__name__ == "_vit_lost_after_epoch_2"


@pytest.mark.parametrize(("options", "message"), [
    ({"workers": 0, "cpus_per_worker": 1}, "workers: expected at least 1 worker per trial, got 0"),
    ({"workers": 2, "cpus_per_worker": 0}, "a worker needs CPUs or GPUs, got 0 and 0"),
])
def test_refuses_a_group_without_workers_or_resources(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        data_parallel(_vit_lost_after_epoch_2, gpus_per_worker=0, storage="/tmp", keep_checkpoints=1,
                      metric="val_accuracy", mode="max", **options)


def _run(rank: int, world_size: int, batch_size: int = 64) -> Any:
    import torch

    from tuneforge.trainables.torch.loop import EpochRun, TrainSettings

    return EpochRun(config={}, settings=TrainSettings(batch_size=batch_size, seed=3), model_config=None,
                    data=None, device=torch.device("cpu"), state=None, scaler=None, epoch=2,
                    rank=rank, world_size=world_size)


def test_workers_share_each_epoch_in_equal_disjoint_parts() -> None:
    n = 1001
    [whole] = [_run(0, 1).shuffled(n)]
    shares = [_run(rank, 3).shuffled(n) for rank in range(3)]
    assert sorted(whole) == list(range(n))
    assert [len(share) for share in shares] == [333, 333, 333]  # the same steps on every rank
    assert len(set(np.concatenate(shares))) == 999
    assert np.array_equal(np.concatenate(shares), whole[:999]), "the single-process permutation, split"


def test_the_config_batch_is_the_global_batch() -> None:
    single, worker = _run(0, 1, batch_size=64), _run(1, 2, batch_size=64)
    assert (single.batch_size, worker.batch_size) == (64, 32)
    assert single.steps_per_epoch(1258) == math.ceil(1258 / 64) == 20
    assert worker.steps_per_epoch(1258) == math.ceil(629 / 32) == 20


@pytest.mark.timeout(300)
def test_a_data_parallel_search_records_its_trials_like_any_other(ray_local, tracking_uri, tmp_path) -> None:
    """``--workers-per-trial 2`` through the runner: the search's child runs hold per-epoch
    metrics, pictures and the model, sent by rank 0, and say how many workers trained them."""
    from mlflow import MlflowClient

    import tuneforge
    from tests.conftest import parent_and_children
    from tuneforge.schema import Tags, TrialStatus

    result = tuneforge.search("vit-digits", algo="random", trials=1, seed=0, smoke=True, workers_per_trial=2,
                              cpus_per_trial=1, tracking_uri=tracking_uri, storage=tmp_path / "ray")
    assert result.status is TrialStatus.FINISHED and result.model_uri is not None
    parent, children = parent_and_children(tracking_uri, "vit-digits")
    assert parent.data.params["workers_per_trial"] == "2" and len(children) == 1
    assert parent.data.params["max_concurrent"] == "1", "two CPUs hold one trial's two workers"
    client = MlflowClient(tracking_uri)
    for child in children:
        assert child.info.status == "FINISHED" and child.data.metrics["workers"] == 2.0
        assert child.data.tags[Tags.DEVICE] == "cpu"
        assert sorted(m.step for m in client.get_metric_history(child.info.run_id, "val_accuracy")) == [1, 2]
        assert {a.path for a in client.list_artifacts(child.info.run_id, "confusion_matrix")} == {
            "confusion_matrix/epoch-0001.png", "confusion_matrix/epoch-0002.png"}


@pytest.mark.full  # make test: the ViT's data-parallel search above (a minute each on 2 CPUs)
@pytest.mark.timeout(300)
def test_a_gan_trains_data_parallel_with_its_gradient_penalty(ray_local, tracking_uri, tmp_path) -> None:
    """A WGAN-GP trial on 2 workers: its generator and critic each behind their own
    DistributedDataParallel (the averaged generator, which does not train, behind none), the
    penalty's double backward through the wrapper; scores, grids and the generator from rank 0."""
    from mlflow import MlflowClient

    import tuneforge
    from tests.conftest import parent_and_children
    from tuneforge.schema import TrialStatus

    result = tuneforge.search("wgan-gp-mnist", algo="random", trials=1, seed=0, smoke=True,
                              workers_per_trial=2, cpus_per_trial=1, tracking_uri=tracking_uri,
                              storage=tmp_path / "ray")
    assert result.status is TrialStatus.FINISHED and result.model_uri is not None
    _, [child] = parent_and_children(tracking_uri, "wgan-gp-mnist")
    client = MlflowClient(tracking_uri)
    assert child.info.status == "FINISHED" and child.data.metrics["workers"] == 2.0
    assert sorted(m.step for m in client.get_metric_history(child.info.run_id, "clf_fid")) == [1, 2]
    assert child.data.metrics["gradient_penalty"] >= 0
    assert {a.path for a in client.list_artifacts(child.info.run_id, "samples")} == {
        "samples/epoch-0001.png", "samples/epoch-0002.png"}
