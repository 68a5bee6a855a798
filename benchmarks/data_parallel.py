"""Data-parallel trials (``--workers-per-trial``): 2 workers x 1 CPU against 1 worker x 2 CPUs.

One invocation runs one ViT trial per layout, ``--repeats`` times in alternating order, on the
same data and config (vit-mnist's fixed config and the model's and loop's defaults; the config's
``batch_size`` is the global batch, so every layout takes the same optimiser steps):

``1 x 1``, ``1 x 2``  a Tune trial of 1 or 2 CPUs (torch threads = CPUs), as a search runs it today;
``2 x 1``             :func:`~tuneforge.platform.data_parallel.data_parallel`: a Ray Train
                      ``TorchTrainer`` of 2 workers (gloo, DDP), 1 CPU and 1 thread each.

Per layout: the loop's ``samples_per_s`` (the training pass, every worker's samples) and
``epoch_s`` of the last epoch (the first is warm-up), Tune's seconds for that whole epoch
(training, validation, checkpoint, pictures, report), the last ``val_accuracy``, and the wall time
of the trial, start-up included (a Train run starts a controller and its workers). Prints Markdown.

    .venv/bin/python benchmarks/data_parallel.py [--train 10000] [--epochs 2] [--repeats 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import machine, mnist_subset

from tuneforge.search_spaces import CategoricalParam, load_space
from tuneforge.trainables import get_trainable


@dataclass(frozen=True)
class Layout:
    workers: int
    cpus_per_worker: float

    def __str__(self) -> str:
        return f"{self.workers} x {self.cpus_per_worker:g}"

    @property
    def how(self) -> str:
        return "TorchTrainer, gloo DDP" if self.workers > 1 else "Tune trial"


LAYOUTS = (Layout(1, 1), Layout(1, 2), Layout(2, 1))


def _config(npz: Path, epochs: int) -> dict[str, Any]:
    """vit-mnist's fixed config on ``npz``, nothing searched (one trial at the defaults)."""
    space = load_space("vit-mnist")
    config = {**space.config, "dataset": {"npz": str(npz)}, "epochs": epochs}
    space = dataclasses.replace(space, config=config, params=(CategoricalParam("seed", (0,)),))
    return {**get_trainable("vit").prepare(space), "seed": 0}


def _trainable(layout: Layout, storage: Path) -> Any:
    from ray import tune

    from tuneforge.platform.data_parallel import data_parallel
    from tuneforge.trainables.vit.trainable import train_vit

    if layout.workers == 1:
        return tune.with_resources(train_vit, {"cpu": layout.cpus_per_worker})
    return data_parallel(train_vit, workers=layout.workers, cpus_per_worker=layout.cpus_per_worker,
                         gpus_per_worker=0, storage=storage, keep_checkpoints=1, metric="val_accuracy",
                         mode="max")


def _trial(layout: Layout, config: dict[str, Any], storage: Path, name: str) -> dict[str, float]:
    """One trial of ``layout``: its last epoch's figures and the trial's wall time."""
    from ray import tune

    started = time.perf_counter()
    [result] = tune.Tuner(_trainable(layout, storage), param_space=config,
                          run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0)).fit()
    wall = time.perf_counter() - started
    if result.error is not None:
        raise result.error
    last = result.metrics_dataframe.iloc[-1]
    return {"samples_per_s": float(last["samples_per_s"]), "epoch_s": float(last["epoch_s"]),
            "tune_epoch_s": float(last["time_this_iter_s"]), "val_accuracy": float(last["val_accuracy"]),
            "wall_s": wall}


def _print_table(args: argparse.Namespace, config: dict[str, Any], runs: dict[Layout, list[dict]]) -> None:
    median = {layout: {key: statistics.median(run[key] for run in rows) for key in rows[0]}
              for layout, rows in runs.items()}
    base = median[Layout(1, 2)]["samples_per_s"]
    print("\n## Data-parallel ViT trials: 2 workers x 1 CPU vs 1 worker x 2 CPUs "
          f"({time.strftime('%Y-%m-%d')})\n")
    print(f"- command: `.venv/bin/python benchmarks/data_parallel.py --train {args.train} "
          f"--epochs {args.epochs} --repeats {args.repeats}`")
    print(f"- machine: {machine('torch', 'ray')}")
    print(f"- data: the first {args.train} MNIST training images as an npz dataset (70/15/15); default ViT; "
          f"global batch {config['batch_size']}; figures of epoch {args.epochs}, medians of {args.repeats}\n")
    print("| workers x CPUs | how | samples/s (training) | vs 1 x 2 | epoch_s | s per epoch (Tune) "
          "| val_accuracy | wall s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for layout, m in median.items():
        print(f"| {layout} | {layout.how} | {m['samples_per_s']:.0f} | {m['samples_per_s'] / base:.2f} "
              f"| {m['epoch_s']:.2f} | {m['tune_epoch_s']:.1f} | {m['val_accuracy']:.4f} "
              f"| {m['wall_s']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=10_000, help="MNIST training images in the subset")
    parser.add_argument("--epochs", type=int, default=2, help="epochs a trial (the last is measured)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no Tune banner or tables
    cpus = max(int(layout.workers * layout.cpus_per_worker) for layout in LAYOUTS)
    ray.init(address="local", num_cpus=cpus, log_to_driver=False, logging_level="WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        config = _config(mnist_subset(Path(tmp), args.train), args.epochs)
        runs = _measure(config, Path(tmp) / "ray", args.repeats)
    _print_table(args, config, runs)


def _measure(config: dict[str, Any], storage: Path, repeats: int) -> dict[Layout, list[dict]]:
    """Every layout's trials, ``repeats`` times, the order reversed every other repeat."""
    runs: dict[Layout, list[dict]] = {layout: [] for layout in LAYOUTS}
    for repeat in range(repeats):
        for layout in (LAYOUTS if repeat % 2 == 0 else LAYOUTS[::-1]):
            name = f"r{repeat}-{layout.workers}x{layout.cpus_per_worker:g}"
            runs[layout].append(run := _trial(layout, config, storage, name))
            print(f"repeat {repeat + 1}, {layout}: {run['samples_per_s']:.0f} samples/s, "
                  f"wall {run['wall_s']:.0f} s", file=sys.stderr)
    return runs


if __name__ == "__main__":
    main()
