"""The contract every trainable family meets, run by Ray Tune as the runner runs it.

One class, every family in ``FAMILIES``: a bundled space small enough for seconds (per-epoch
families with the ``--smoke`` budget), and a written reason where part of the contract does not
apply. Adding a family means adding one line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tuneforge.schema import TrialStatus
from tuneforge.search_spaces import load_space
from tuneforge.trainables import get_trainable

TIMINGS = {"epoch_s", "samples_per_s", "tokens_per_s", "peak_rss_mb", "latency_ms", "fit_time_s",
           "score_time_s"}
"""Metrics that measure the machine, not the model."""


@dataclass(frozen=True)
class Family:
    """A bundled space to run the contract on; ``config`` overrides settings to make its trials
    small (a reason beside each); ``no_gpu`` says why the GPU check does not apply; ``full``: too
    heavy for ``make test`` (its smoke search runs there, in its family's tests)."""

    space: str
    per_epoch: bool
    no_gpu: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    full: bool = False

    def __str__(self) -> str:
        return self.space


FAMILIES = [
    Family("svc-wine", per_epoch=False, no_gpu="scikit-learn estimators run on the CPU"),
    Family("branin", per_epoch=False, no_gpu="a test function is evaluated in numpy"),
    Family("vit-digits", per_epoch=True),
    Family("transformer-cmudict", per_epoch=True, full=True),
    # The DCGAN is the cGAN without labels (its family's parent class): the cGAN and WGAN-GP lines
    # cover every GAN code path.
    Family("cgan-fashion-mnist", per_epoch=True, full=True),
    Family("wgan-gp-mnist", per_epoch=True, full=True),
    # A supernet of 3 cells (the fewest with both reduction cells) and 4 channels on 64 images:
    # the bundled 5 cells of 8-12 channels take minutes a trial on 2 CPUs.
    Family("darts-digits", per_epoch=True, config={"layers": 3, "channels": 4, "train_images": 64},
           full=True),
]


def _param(families: list[Family]) -> list[Any]:
    return [pytest.param(f, id=str(f), marks=[pytest.mark.full] if f.full else []) for f in families]


@pytest.fixture(params=_param(FAMILIES))
def family(request) -> Family:
    return request.param


@pytest.fixture
def setup(family: Family) -> tuple[Any, dict[str, Any]]:
    """The family's Trainable and one trial config: the prepared fixed config at the space's
    centre (``--smoke`` for per-epoch families), with the family's overrides."""
    space = load_space(family.space)
    trainable = get_trainable(space.trainable)
    config = {**trainable.prepare(space), **space.decode(np.full(space.n_dims, 0.5)), **family.config}
    if trainable.smoke:
        config["smoke"] = True
    return trainable, config


def _run(trainable: Any, config: dict, storage: Path, *, gpus: float = 0, **options: Any) -> list:
    from ray import tune

    function = tune.with_resources(trainable.function, {"cpu": 1, "gpu": gpus})
    analysis = tune.run(function, config=config, storage_path=str(storage), verbose=0, **options)
    return analysis.trials


@pytest.fixture(scope="module")
def twin_trials(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Family, Any, dict], list]:
    """A family's config run twice by Ray Tune (two samples, one CPU each, no stop or restore),
    once for the module: the two must agree, and the first is the uninterrupted run a resumed
    trial must match and the CPU run a GPU-given trial must match."""
    trials: dict[str, list] = {}

    def twins(family: Family, trainable: Any, config: dict) -> list:
        if family.space not in trials:
            trials[family.space] = _run(trainable, config, tmp_path_factory.mktemp(f"twins-{family.space}"),
                                        num_samples=2)
        return trials[family.space]

    return twins


def _model_metrics(result: dict, trainable: Any, config: dict) -> dict[str, float]:
    return {k: result[k] for k in trainable.metrics(config) - TIMINGS}


class TestTrainableContract:
    def test_reports_every_declared_metric_each_step(self, family, smoke_search) -> None:
        """Read from the family's smoke search (``smoke_search``), as the runner ran its trials."""
        space = load_space(family.space)
        trainable = get_trainable(space.trainable)
        searched = smoke_search(family.space)
        assert searched.result.status is TrialStatus.FINISHED
        trials = searched.trial_results()
        assert len(trials) == 2
        for config, reported in trials.values():
            assert [r["training_iteration"] for r in reported] == list(range(1, len(reported) + 1))
            assert len(reported) == (2 if family.per_epoch else 1)
            for result in reported:
                assert trainable.metrics(config) <= set(result)
                assert all(np.isfinite(result[name]) for name in trainable.metrics(config))
                assert space.metric in result
            if family.per_epoch:
                assert [r["epoch"] for r in reported] == [1, 2]

    def test_result_depends_only_on_the_config(self, ray_local, setup, family, twin_trials) -> None:
        trainable, config = setup
        first, second = twin_trials(family, trainable, config)
        assert first.status == second.status == "TERMINATED"
        metric = load_space(family.space).metric
        assert first.last_result[metric] == second.last_result[metric]
        assert _model_metrics(first.last_result, trainable, config) == \
               _model_metrics(second.last_result, trainable, config)

    def test_resumed_trial_continues_as_if_never_stopped(self, ray_local, family, setup, twin_trials,
                                                         tmp_path) -> None:
        trainable, config = setup
        whole, _ = twin_trials(family, trainable, config)
        if not family.per_epoch:
            assert whole.checkpoint is None, "a one-shot family has no checkpoint: a restart runs again"
            return
        [stopped] = _run(trainable, config, tmp_path / "stopped", stop={"training_iteration": 1})
        assert stopped.last_result["epoch"] == 1
        [resumed] = _run(trainable, config, tmp_path / "resumed", restore=stopped.checkpoint.path)
        assert resumed.last_result["epoch"] == 2
        assert _model_metrics(resumed.last_result, trainable, config) == \
               _model_metrics(whole.last_result, trainable, config)

    @pytest.mark.parametrize("family", _param([f for f in FAMILIES if not f.no_gpu]), ids=str)
    def test_uses_the_gpu_ray_assigns(self, ray_local, family, setup, twin_trials, tmp_path) -> None:
        """Ray's ``num_gpus`` resource on a CPU machine: the trial is given GPU 0, which torch
        cannot see; it warns and trains on the CPU, to the same results. (Families with a
        ``no_gpu`` reason are not generated here.)"""
        import torch

        trainable, config = setup
        on_cpu, _ = twin_trials(family, trainable, config)
        [given_gpu] = _run(trainable, config, tmp_path / "gpu", gpus=1)
        assert given_gpu.status == "TERMINATED"
        if not torch.cuda.is_available():
            assert _model_metrics(given_gpu.last_result, trainable, config) == \
                   _model_metrics(on_cpu.last_result, trainable, config)
