"""DARTS' bar (issue 12): the derived cells beat random cells of the same space and budget, and
what a supernet epoch costs, first order against second.

Two measurements, each printed as Markdown for BENCHMARKS.md:

``search SPACE``  ``tuneforge search SPACE`` (``--algo``, ``--trials``; the space's epochs), then
                  ``tuneforge darts retrain`` of its parent run (the best trial's genotype and
                  ``--random`` random genotypes, ``--retrain-epochs`` each at ``--channels`` x
                  ``--layers``, same seed and data): every genotype's held-out test accuracy and
                  parameter count, the random ones' mean and standard deviation, the derived
                  genotype's margin; the best trial's cell picture and last heat map are copied to
                  ``benchmarks/results/``.
``cost``          seconds per supernet step (one architecture step and one weight step, batch
                  ``--batch``) and peak memory of the space's supernet, first and second order,
                  each in a fresh process on ``--threads`` threads, alternating, ``--repeats``
                  times, in one invocation; seconds per epoch are steps x the epoch's steps.

    .venv/bin/python benchmarks/darts.py search darts-fashion-mnist --trials 2 --random 5
    .venv/bin/python benchmarks/darts.py cost darts-fashion-mnist --repeats 2
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import RESULTS, machine, search_in_folder

from tuneforge.search_spaces import load_space


def search(args: argparse.Namespace) -> None:
    from mlflow import MlflowClient

    from tuneforge.platform.darts_retrain import retrain
    from tuneforge.platform.planning import SearchOptions

    folder = Path(args.keep)
    space = _fixed(load_space(args.space), args.fix)
    started = time.perf_counter()
    result = search_in_folder(space, folder, args.cpus, algo=args.algo, trials=args.trials, seed=args.seed)
    search_s = time.perf_counter() - started
    uri = result.tracking_uri
    best = result.best
    client = MlflowClient(uri)
    for name in ("cells.png", f"alphas/epoch-{int(best.metrics['epoch']):04d}.png"):
        local = client.download_artifacts(best.run_id, name, str(folder))
        shutil.copy(local, RESULTS / f"{args.space}-{Path(name).stem.replace('epoch-', 'alphas-epoch-')}.png")
    started = time.perf_counter()
    comparison = retrain(result.parent_run_id, n_random=args.random, epochs=args.retrain_epochs,
                         channels=args.channels, layers=args.layers, seed=args.seed,
                         train_images=args.retrain_images,
                         options=SearchOptions(tracking_uri=uri, storage=str(folder / "ray"),
                                               cpus_per_trial=args.cpus))
    retrain_s = time.perf_counter() - started
    summary = comparison.summary
    print(f"\n### {args.space}: derived vs random genotypes\n")
    print(f"Machine: {machine('torch')}")
    print(f"Search: `{args.algo}`, {args.trials} trials, fixed {args.fix or 'nothing'}, seed {args.seed}, "
          f"{args.cpus} CPU a trial: "
          f"{search_s / 60:.1f} min. Retrain: {args.random} random + derived, {args.retrain_epochs} epochs, "
          f"{args.channels} channels x {args.layers} cells: {retrain_s / 60:.1f} min.\n")
    print(f"Best supernet trial {best.trial_id}: val_accuracy {best.metrics['val_accuracy']:.4f}, "
          f"params {json.dumps(best.params)}")
    genotype = Path(client.download_artifacts(best.run_id, "genotype.json", str(folder))).read_text()
    print(f"Its genotype: `{json.dumps(json.loads(genotype))}`\n")
    print(comparison.markdown)
    if "derived_test_accuracy" in summary and "random_test_accuracy_mean" in summary:
        margin = summary["derived_test_accuracy"] - summary["random_test_accuracy_mean"]
        print(f"Derived minus the random mean: {margin:+.4f} "
              f"({margin / max(summary['random_test_accuracy_std'], 1e-12):+.2f} random standard "
              "deviations); "
              f"bar (derived beats the random mean): {'met' if margin > 0 else 'NOT met'}")


def _fixed(space: Any, assignments: list[str]) -> Any:
    """``space`` with each ``KEY=VALUE`` (YAML) moved from its params to its fixed config."""
    import dataclasses

    import yaml

    fixed = dict(item.split("=", 1) for item in assignments)
    if not fixed:
        return space
    config = {**space.config, **{key: yaml.safe_load(value) for key, value in fixed.items()}}
    params = tuple(p for p in space.params if p.name not in fixed)
    return dataclasses.replace(space, config=config, params=params)


def _step_cost(space_name: str, order: int, batch: int, steps: int, threads: int) -> dict[str, float]:
    """In this (fresh) process: seconds per architecture + weight step, and peak RSS."""
    import resource

    import torch
    from torch.nn import functional as F

    from tuneforge.trainables.darts.architect import arch_step
    from tuneforge.trainables.darts.search_model import Supernet, SupernetConfig
    from tuneforge.trainables.images import load_image_dataset

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    space = load_space(space_name)
    splits = load_image_dataset(space.config["dataset"])
    channels, side, _ = splits.image_shape
    keys = {"channels", "layers", "steps", "stem_multiplier", "stem_stride"}
    config = SupernetConfig(**{k: v for k, v in space.config.items() if k in keys}, image_size=side,
                            in_channels=channels, n_classes=splits.n_classes)
    supernet = Supernet(config)
    weights = torch.optim.SGD(supernet.weights(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    arch = torch.optim.Adam(supernet.arch_parameters(), lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    images = torch.from_numpy(splits.train_images[: 2 * batch].astype("float32") / 255.0)
    labels = torch.from_numpy(splits.train_labels[: 2 * batch].copy())
    train, held_out = (images[:batch], labels[:batch]), (images[batch:], labels[batch:])
    times = []
    for _ in range(steps + 1):  # the first step warms up and is not counted
        started = time.perf_counter()
        arch_step(supernet, arch, train, held_out, order=order, xi=0.025)
        loss = F.cross_entropy(supernet(train[0]), train[1])
        weights.zero_grad(set_to_none=True)
        loss.backward()
        weights.step()
        times.append(time.perf_counter() - started)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"step_s": statistics.median(times[1:]), "peak_rss_mb": peak_mb}


def cost(args: argparse.Namespace) -> None:
    space = load_space(args.space)
    n_weight_images = (space.config.get("train_images") or 0) // 2
    steps_per_epoch = math.ceil(n_weight_images / args.batch) if n_weight_images else None
    measured: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    for _ in range(args.repeats):
        for order in (1, 2):  # alternating, each in a fresh process (its own peak memory)
            command = [sys.executable, __file__, "_step", args.space, str(order), str(args.batch),
                       str(args.steps), str(args.threads)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            measured[order].append(json.loads(output.strip().splitlines()[-1]))
    print(f"\n### {args.space}: supernet cost, first vs second order\n")
    print(f"Machine: {machine('torch')}; {args.threads} thread(s), batch {args.batch}, "
          f"median of {args.steps} steps, {args.repeats} alternating repeats.\n")
    print("| order | s per step (arch + weights) | s per epoch | peak RSS (MB) |")
    print("|---|---|---|---|")
    for order, runs in measured.items():
        step_s = statistics.median(r["step_s"] for r in runs)
        epoch = f"{step_s * steps_per_epoch:.0f} ({steps_per_epoch} steps)" if steps_per_epoch else "-"
        print(f"| {order} | {step_s:.2f} | {epoch} | {max(r['peak_rss_mb'] for r in runs):.0f} |")
    first, second = (statistics.median(r["step_s"] for r in measured[order]) for order in (1, 2))
    ratio = second / first
    print(f"\nSecond order / first order: {ratio:.2f}x the time a step.")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_step":
        space, order, batch, steps, threads = sys.argv[2], *map(int, sys.argv[3:7])
        print(json.dumps(_step_cost(space, order, batch, steps, threads)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    searching = commands.add_parser("search")
    searching.add_argument("space")
    searching.add_argument("--algo", default="random")
    searching.add_argument("--trials", type=int, default=2)
    searching.add_argument("--seed", type=int, default=0)
    searching.add_argument("--cpus", type=float, default=1.0)
    searching.add_argument("--random", type=int, default=5)
    searching.add_argument("--retrain-epochs", type=int, default=5)
    searching.add_argument("--channels", type=int, default=16)
    searching.add_argument("--layers", type=int, default=6)
    searching.add_argument("--keep", default="/tmp/darts-bench")
    searching.add_argument("--fix", action="append", default=[], metavar="KEY=VALUE",
                           help="fix a searched param of the space (e.g. order=1 for a CPU's budget)")
    searching.add_argument("--retrain-images", type=int, help="training images of the retrain")
    searching.set_defaults(handler=search)
    costing = commands.add_parser("cost")
    costing.add_argument("space")
    costing.add_argument("--repeats", type=int, default=2)
    costing.add_argument("--steps", type=int, default=5)
    costing.add_argument("--batch", type=int, default=64)
    costing.add_argument("--threads", type=int, default=1)
    costing.set_defaults(handler=cost)
    args = parser.parse_args()
    args.handler(args)


if __name__ == "__main__":
    main()
