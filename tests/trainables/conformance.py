"""The contract every trainable meets, as one test class each family subclasses.

A subclass sets ``space_name`` (a bundled space of its family, small enough to run in seconds),
and says why where a part of the contract does not apply: ``no_gpu`` (the family runs on the
CPU only) or ``no_resume`` (it has no checkpoint to resume from). Adding a trainable family means
adding one such subclass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from tuneforge.search_spaces import load_space
from tuneforge.trainables import get_trainable


class TrainableContract:
    space_name: ClassVar[str]
    no_gpu: ClassVar[str | None] = None
    no_resume: ClassVar[str | None] = None

    @pytest.fixture
    def setup(self) -> tuple[Any, dict[str, Any]]:
        """The family and one trial config: the prepared fixed config at the space's centre."""
        space = load_space(self.space_name)
        trainable = get_trainable(space.trainable)
        config = space.trial_config(space.decode(np.full(space.n_dims, 0.5)))
        return trainable, {**trainable.prepare(space), **config}

    def _run(self, trainable: Any, config: dict, storage: Path, **run_options: Any) -> list:
        from ray import tune

        analysis = tune.run(trainable.function, config=config, storage_path=str(storage),
                            verbose=0, **run_options)
        return analysis.trials

    def test_reports_every_declared_metric(self, ray_local, setup, tmp_path: Path) -> None:
        trainable, config = setup
        [trial] = self._run(trainable, config, tmp_path)
        assert trial.status == "TERMINATED"
        assert trainable.metrics(config) <= set(trial.last_result)
        assert all(np.isfinite(trial.last_result[name]) for name in trainable.metrics(config))

    def test_result_depends_only_on_the_config(self, ray_local, setup, tmp_path: Path) -> None:
        trainable, config = setup
        first, second = self._run(trainable, config, tmp_path, num_samples=2)
        metric = load_space(self.space_name).metric
        assert first.last_result[metric] == second.last_result[metric]

    def test_resumes_from_its_checkpoint(self, ray_local, setup, tmp_path: Path) -> None:
        if self.no_resume:
            pytest.skip(self.no_resume)
        trainable, config = setup
        [trial] = self._run(trainable, config, tmp_path / "first")
        [resumed] = self._run(trainable, config, tmp_path / "resumed", restore=trial.checkpoint.path)
        # Timings are reported too: equal values mean the work was not done again.
        assert {k: resumed.last_result[k] for k in trainable.metrics(config)} == \
               {k: trial.last_result[k] for k in trainable.metrics(config)}

    def test_uses_the_gpu_ray_assigns(self, ray_local, setup, tmp_path: Path) -> None:
        if self.no_gpu:
            pytest.skip(self.no_gpu)
        raise NotImplementedError("GPU placement is checked by the torch families")
