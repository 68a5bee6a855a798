"""The prepared GPU check (issue 27): every torch family's code path on CUDA, in one command.

On a machine with CUDA: one epoch of each torch family (mixed precision, as the loop trains on a
GPU) on a subset of its data, through Ray Tune with 1 GPU a trial, printing training samples/s,
the GPU memory torch held, and the device each trial reports; then a 4-trial ``tuneforge.search``
at ``--gpus-per-trial 0.25`` (four trials sharing one GPU), and, where two GPUs exist, one
``--workers-per-trial 2`` trial (DDP over NCCL). Exits 1 if any part failed. On a machine without
CUDA it says so and exits 0. Prints Markdown for BENCHMARKS.md.

    .venv/bin/python benchmarks/gpu_check.py [--train 10000] [--epochs 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from _common import TORCH_FAMILIES, family_config, machine, trial_data


def _one_epoch(family: str, config: dict[str, Any], storage: Path) -> dict[str, Any]:
    """One trial of ``family`` on 1 GPU: its last result's figures."""
    from ray import tune

    from tuneforge.trainables import get_trainable

    function = tune.with_resources(get_trainable(family).function, {"cpu": 2, "gpu": 1})
    started = time.perf_counter()
    [result] = tune.Tuner(function, param_space=config,
                          run_config=tune.RunConfig(name=family, storage_path=str(storage), verbose=0)).fit()
    if result.error is not None:
        raise result.error
    last = result.metrics
    memory = [value for key, value in last.items() if key.startswith("system/gpu_") and "memory" in key]
    return {"samples_per_s": last["samples_per_s"], "gpu_memory_mb": max(memory, default=float("nan")),
            "device": last["device"], "wall_s": time.perf_counter() - started}


def _search(folder: Path, npz: Path, **options: Any) -> str:
    """A small vit search through ``tuneforge.search`` with ``options``: one line on how it went."""
    import dataclasses

    from tuneforge import SearchOptions, search
    from tuneforge.search_spaces import load_space

    space = load_space("vit-mnist")
    space = dataclasses.replace(space, config={**space.config, "dataset": {"npz": str(npz)}, "epochs": 1})
    result = search(space, SearchOptions(algo="random", seed=0, scheduler="none", start_from="none",
                                         tracking_uri=f"sqlite:///{folder / 'mlflow.db'}",
                                         storage=str(folder / "ray"), **options))
    devices = ", ".join(sorted({t.device or "?" for t in result.trials}))
    finished = sum(t.status.value == "FINISHED" for t in result.trials)
    return f"{result.status.lower()}: {len(result.trials)} trials, {finished} finished, devices {devices}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=10_000, help="training images (CMUdict pairs)")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print(f"no CUDA device here (torch {torch.__version__}, built for CUDA {torch.version.cuda}): "
              "nothing to check")
        return 0
    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    n_gpus = torch.cuda.device_count()
    failures = 0
    rows, lines = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = trial_data(folder, args.train)
        ray.init(address="local", log_to_driver=False, logging_level="WARNING")
        for family in TORCH_FAMILIES:
            try:
                figures = _one_epoch(family, family_config(family, data, args.epochs), folder / "ray")
                rows.append(f"| {family} | {figures['samples_per_s']:.0f} | {figures['gpu_memory_mb']:.0f} "
                            f"| {figures['device']} | {figures['wall_s']:.0f} |")
            except Exception:  # every family is checked; the failure is printed in full
                failures += 1
                traceback.print_exc()
                rows.append(f"| {family} | failed | | | |")
        ray.shutdown()
        checks = [("4 trials at --gpus-per-trial 0.25", {"trials": 4, "gpus_per_trial": 0.25})]
        if n_gpus >= 2:
            checks.append(("1 trial at --workers-per-trial 2", {"trials": 1, "gpus_per_trial": 1,
                                                                "workers_per_trial": 2}))
        for n, (name, options) in enumerate(checks):
            try:
                (folder / f"search-{n}").mkdir()
                lines.append(f"- {name}: {_search(folder / f'search-{n}', data['npz'], **options)}")
            except Exception:
                failures += 1
                traceback.print_exc()
                lines.append(f"- {name}: failed")
    print(f"\n## GPU check ({time.strftime('%Y-%m-%d')})\n")
    print(f"- command: `.venv/bin/python benchmarks/gpu_check.py --train {args.train} "
          f"--epochs {args.epochs}`")
    print(f"- machine: {machine('torch', 'ray')}")
    print(f"- each family: {args.epochs} epoch(s) on the first {args.train} MNIST images (CMUdict pairs), "
          "1 GPU and 2 CPUs a trial, mixed precision\n")
    print("| family | samples/s | GPU memory held, MB | device | wall s |")
    print("|---|---:|---:|---|---:|")
    print("\n".join(rows))
    print("\n" + "\n".join(lines))
    if n_gpus < 2:
        print(f"- --workers-per-trial 2: not checked ({n_gpus} GPU)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
