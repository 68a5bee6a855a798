"""The contract every trainable family meets, run by Ray Tune as the runner runs it.

One class, every family in ``FAMILIES``: a bundled space small enough for seconds (per-epoch
families with the ``--smoke`` budget), and a written reason where part of the contract does not
apply. Adding a family means adding one line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tuneforge.search_spaces import load_space
from tuneforge.trainables import get_trainable

TIMINGS = {"epoch_s", "samples_per_s", "tokens_per_s", "peak_rss_mb", "fit_time_s", "score_time_s"}
"""Metrics that measure the machine, not the model."""


@dataclass(frozen=True)
class Family:
    space: str
    per_epoch: bool
    no_gpu: str | None = None

    def __str__(self) -> str:
        return self.space


FAMILIES = [
    Family("svc-wine", per_epoch=False, no_gpu="scikit-learn estimators run on the CPU"),
    Family("branin", per_epoch=False, no_gpu="a test function is evaluated in numpy"),
    Family("vit-digits", per_epoch=True),
    Family("transformer-cmudict", per_epoch=True),
    # The DCGAN is the cGAN without labels (its family's parent class), and its smoke search runs
    # in tests/trainables/gans; the cGAN and WGAN-GP lines cover every GAN code path.
    Family("cgan-fashion-mnist", per_epoch=True),
    Family("wgan-gp-mnist", per_epoch=True),
]


@pytest.fixture(params=FAMILIES, ids=str)
def family(request) -> Family:
    return request.param


@pytest.fixture
def setup(family: Family) -> tuple[Any, dict[str, Any]]:
    """The family's Trainable and one trial config: the prepared fixed config at the space's
    centre (``--smoke`` for per-epoch families)."""
    space = load_space(family.space)
    trainable = get_trainable(space.trainable)
    config = {**trainable.prepare(space), **space.decode(np.full(space.n_dims, 0.5))}
    if trainable.smoke:
        config["smoke"] = True
    return trainable, config


def _run(trainable: Any, config: dict, storage: Path, *, gpus: float = 0, **options: Any) -> list:
    from ray import tune

    function = tune.with_resources(trainable.function, {"cpu": 1, "gpu": gpus})
    analysis = tune.run(function, config=config, storage_path=str(storage), verbose=0, **options)
    return analysis.trials


@pytest.fixture(scope="module")
def plain_trial(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Family, Any, dict], Any]:
    """A family's trial run once by Ray Tune (one sample, one CPU, no stop or restore), shared by
    the tests below that each ran exactly that trial (to check its results, as the uninterrupted
    run a resumed trial must match, and as the CPU run a GPU-given trial must match)."""
    trials: dict[str, Any] = {}

    def trial(family: Family, trainable: Any, config: dict) -> Any:
        if family.space not in trials:
            [trials[family.space]] = _run(trainable, config, tmp_path_factory.mktemp(f"plain-{family.space}"))
        return trials[family.space]

    return trial


def _model_metrics(result: dict, trainable: Any, config: dict) -> dict[str, float]:
    return {k: result[k] for k in trainable.metrics(config) - TIMINGS}


class TestTrainableContract:
    def test_reports_every_declared_metric_each_step(self, ray_local, family, setup, plain_trial) -> None:
        trainable, config = setup
        trial = plain_trial(family, trainable, config)
        assert trial.status == "TERMINATED"
        assert trainable.metrics(config) <= set(trial.last_result)
        assert all(np.isfinite(trial.last_result[name]) for name in trainable.metrics(config))
        history = trial.metric_analysis  # per-metric summaries over every result
        n_results = trial.last_result["training_iteration"]
        if family.per_epoch:
            assert n_results == 2 and history["epoch"]["min"] == 1 and history["epoch"]["max"] == 2
            assert load_space(family.space).metric in history
        else:
            assert n_results == 1

    def test_result_depends_only_on_the_config(self, ray_local, setup, family, tmp_path) -> None:
        trainable, config = setup
        first, second = _run(trainable, config, tmp_path, num_samples=2)
        metric = load_space(family.space).metric
        assert first.last_result[metric] == second.last_result[metric]

    def test_resumed_trial_continues_as_if_never_stopped(self, ray_local, family, setup, plain_trial,
                                                         tmp_path) -> None:
        trainable, config = setup
        if not family.per_epoch:
            trial = plain_trial(family, trainable, config)
            assert trial.checkpoint is None, "a one-shot family has no checkpoint: a restart runs again"
            return
        whole = plain_trial(family, trainable, config)
        [stopped] = _run(trainable, config, tmp_path / "stopped", stop={"training_iteration": 1})
        assert stopped.last_result["epoch"] == 1
        [resumed] = _run(trainable, config, tmp_path / "resumed", restore=stopped.checkpoint.path)
        assert resumed.last_result["epoch"] == 2
        assert _model_metrics(resumed.last_result, trainable, config) == \
               _model_metrics(whole.last_result, trainable, config)

    @pytest.mark.parametrize("family", [f for f in FAMILIES if not f.no_gpu], ids=str)
    def test_uses_the_gpu_ray_assigns(self, ray_local, family, setup, plain_trial, tmp_path) -> None:
        """Ray's ``num_gpus`` resource on a CPU machine: the trial is given GPU 0, which torch
        cannot see; it warns and trains on the CPU, to the same results. (Families with a
        ``no_gpu`` reason are not run here.)"""
        import torch

        trainable, config = setup
        on_cpu = plain_trial(family, trainable, config)
        [given_gpu] = _run(trainable, config, tmp_path / "gpu", gpus=1)
        assert given_gpu.status == "TERMINATED"
        if not torch.cuda.is_available():
            assert _model_metrics(given_gpu.last_result, trainable, config) == \
                   _model_metrics(on_cpu.last_result, trainable, config)
