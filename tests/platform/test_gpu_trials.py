"""GPU trials on a CPU machine: the local Ray declares two GPUs (``ray_local``), so Ray schedules
fractional GPU trials as it would on a GPU node, and each trial, finding no CUDA device, warns
once and trains on the CPU."""

from __future__ import annotations

import logging

import tuneforge
from tests.conftest import parent_and_children
from tuneforge.schema import Tags, TrialStatus


def test_half_a_gpu_a_trial_runs_four_trials_at_once_on_two_gpus(ray_local, tracking_uri, tmp_path) -> None:
    result = tuneforge.search("vit-digits", algo="random", trials=4, seed=0, smoke=True,
                              cpus_per_trial=0.5, gpus_per_trial=0.5, tracking_uri=tracking_uri,
                              storage=tmp_path / "ray")
    assert result.status is TrialStatus.FINISHED
    parent, children = parent_and_children(tracking_uri, "vit-digits")
    assert parent.data.params["gpus_per_trial"] == "0.5" and len(children) == 4
    starts = [c.info.start_time for c in children]
    ends = [c.info.end_time for c in children]
    assert max(starts) < min(ends), "all four trials ran at the same time"
    assert {c.data.tags[Tags.DEVICE] for c in children} == {"cpu"}, "no CUDA here: the CPU"


def test_a_gpu_torch_cannot_see_is_warned_about_once_then_the_cpu(ray_local) -> None:
    @ray_local.remote(num_gpus=0.5)
    def device_twice() -> tuple[list[int], list[str], list[str]]:
        import ray

        from tuneforge.trainables import _session

        messages: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda record: messages.append(record.getMessage())
        _session.logger.addHandler(handler)
        _session._warned_hidden_gpu = False  # a fresh trial process (a pooled worker may be reused)
        devices = [_session.trial_device(), _session.trial_device()]
        return ray.get_gpu_ids(), devices, messages

    gpu_ids, devices, messages = ray_local.get(device_twice.remote())
    assert len(gpu_ids) == 1 and devices == ["cpu", "cpu"]
    [warning] = messages
    assert f"Ray assigned GPU {gpu_ids[0]} to this trial but torch sees no CUDA device" in warning
