"""``compile: true``: a torch family's trial trains through ``torch.compile`` (inductor, on this
machine's CPU), while its checkpoints and model stay those of the plain module; a machine
without a C++ compiler trains in eager mode with one warning; a family that steps its model's
parts itself refuses it. Every other test trains in eager mode (the default)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tuneforge.errors import ConfigError
from tuneforge.search_spaces import load_space
from tuneforge.trainables import get_trainable


def _trial(storage: Path, compile_: bool, **options) -> object:
    from ray import tune

    space = load_space("vit-digits")
    trainable = get_trainable("vit")
    config = {**trainable.prepare(space), **space.decode(np.full(space.n_dims, 0.5)), "epochs": 2,
              "compile": compile_}
    function = tune.with_resources(trainable.function, {"cpu": 1})
    [trial] = tune.run(function, config=config, storage_path=str(storage), verbose=0, **options).trials
    return trial


def test_a_compiled_trial_trains_and_checkpoints_the_plain_module(ray_local, tmp_path: Path) -> None:
    from tuneforge.trainables.torch.loop import can_compile

    assert can_compile(torch.device("cpu")), "this machine builds inductor's kernels (g++, Python's headers)"
    compiled = _trial(tmp_path / "compiled", True)
    assert compiled.status == "TERMINATED" and compiled.last_result["epoch"] == 2
    assert 0.0 <= compiled.last_result["val_accuracy"] <= 1.0
    # A checkpoint of a compiled trial is an eager one's: it resumes either way.
    state = torch.load(Path(compiled.checkpoint.path) / "state.pt", weights_only=False)
    assert not any(key.startswith("_orig_mod.") for key in state["model"]), "the plain module's keys"
    [stopped] = [_trial(tmp_path / "eager", False, stop={"training_iteration": 1})]
    eager_state = torch.load(Path(stopped.checkpoint.path) / "state.pt", weights_only=False)
    assert sorted(state["model"]) == sorted(eager_state["model"])
    resumed = _trial(tmp_path / "resumed", True, restore=stopped.checkpoint.path)
    assert resumed.last_result["epoch"] == 2, "a compiled trial resumes from an eager checkpoint"


def test_without_a_cxx_compiler_a_trial_trains_in_eager_mode_with_one_warning(tmp_path: Path) -> None:
    code = ("import torch, warnings; from tuneforge.trainables.torch.loop import can_compile; "
            "warnings.simplefilter('default'); "
            "print(can_compile(torch.device('cpu')), can_compile(torch.device('cpu')))")
    env = {**os.environ, "PATH": str(tmp_path)}  # no g++, c++ or clang++ on it
    env.pop("CXX", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]
    warnings = [line for line in done.stderr.splitlines() if "RuntimeWarning" in line]
    assert len(warnings) == 1, done.stderr
    assert ("compile: torch.compile needs a C++ compiler (g++) on the CPU; training in eager mode"
            in warnings[0])


def test_compile_is_refused_where_it_does_not_apply_or_is_not_a_boolean() -> None:
    import dataclasses

    darts = load_space("darts-digits")
    with pytest.raises(ConfigError, match=r"compile: trainable 'darts' steps its model's parts itself"):
        get_trainable("darts").prepare(dataclasses.replace(darts, config={**darts.config, "compile": True}))
    vit = load_space("vit-digits")
    with pytest.raises(ConfigError, match=r"compile: 'yes' is not allowed; it must be true or false$"):
        get_trainable("vit").prepare(dataclasses.replace(vit, config={**vit.config, "compile": "yes"}))
