"""The Vision Transformer's bar (issue 7): it learns, the Tune wrapper costs little, its memory.

Three measurements, each printed as Markdown for BENCHMARKS.md:

``default``   one trial of a bundled space's fixed config (every searched param at the model's
              and loop's defaults), as ``tuneforge search`` runs it; test accuracy of the model
              logged to MLflow, loaded back with ``mlflow.pytorch.load_model``; the trial's peak RSS.
``search``    ``tuneforge search SPACE --algo bayes --trials N``; the best trial's logged model
              on the test split (the test split is used only here).
``overhead``  samples/s of a ViT trial under tuneforge (Ray Tune, MLflow, checkpoints, pictures)
              against the same model, data, batches and threads in a plain PyTorch loop,
              alternating, ``--repeats`` times, in one invocation.

    .venv/bin/python benchmarks/vit.py default --space vit-mnist [--epochs 5]
    .venv/bin/python benchmarks/vit.py search --space vit-mnist --trials 8
    .venv/bin/python benchmarks/vit.py overhead [--repeats 3] [--train 10000]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    alternate,
    machine,
    metric_history,
    mnist_subset,
    rate_comparison,
    search_in_folder,
    trial_rate_per_s,
    with_epochs,
)

from tuneforge.search_spaces import CategoricalParam, load_space
from tuneforge.trainables.images import load_image_dataset


def test_accuracy(model_uri: str, tracking_uri: str, dataset: Any) -> float:
    """Accuracy on the test split of the MLflow model at ``model_uri`` (raw images in)."""
    import mlflow.pytorch
    import torch

    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pytorch.load_model(model_uri).eval()
    splits = load_image_dataset(dataset)
    correct = 0
    with torch.no_grad():
        for start in range(0, len(splits.test_labels), 1000):
            images = torch.from_numpy(np.asarray(splits.test_images[start:start + 1000], np.float32) / 255)
            correct += int((model(images).argmax(1).numpy() == splits.test_labels[start:start + 1000]).sum())
    return correct / len(splits.test_labels)


def _single_trial_space(name: str, epochs: int | None) -> Any:
    """The bundled space with nothing searched: one trial of its fixed config and the defaults."""
    space = with_epochs(load_space(name), epochs)
    return dataclasses.replace(space, params=(CategoricalParam("seed", (0,)),))


def default(args: argparse.Namespace) -> None:
    space = _single_trial_space(args.space, args.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = search_in_folder(space, Path(tmp), args.cpus, algo="grid", seed=0)
        wall = time.perf_counter() - started
        accuracy = test_accuracy(result.model_uri, result.tracking_uri, result.best.params.get("dataset")
                                 or space.config["dataset"])
        metrics = result.best.metrics
        print(f"\n## {args.space}: the default config, one trial ({time.strftime('%Y-%m-%d')})\n")
        print(f"- command: `.venv/bin/python benchmarks/vit.py default --space {args.space}"
              f"{f' --epochs {args.epochs}' if args.epochs else ''} --cpus {args.cpus:g}`")
        print(f"- machine: {machine('torch')}")
        print(f"- config: {dict(space.config)} and the model's and loop's defaults")
        print(f"- budget: 1 trial x {int(metrics['epoch'])} epochs, {args.cpus:g} CPUs, wall {wall:.0f} s "
              "(Ray and MLflow start-up included)")
        history = metric_history(result.tracking_uri, result.best.run_id, "val_accuracy")
        print(f"- val_accuracy per epoch: {', '.join(f'{v:.4f}' for v in history)}")
        print(f"- **test accuracy {accuracy:.4f}** (10k test images, the logged MLflow model)")
        print(f"- samples/s (training, last epoch): {metrics['samples_per_s']:.0f}; "
              f"**peak RSS of the trial: {metrics['peak_rss_mb']:.0f} MB**")


def search(args: argparse.Namespace) -> None:
    space = with_epochs(load_space(args.space), args.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = search_in_folder(space, Path(tmp), args.cpus, algo=args.algo, trials=args.trials,
                                  seed=args.seed)
        wall = time.perf_counter() - started
        accuracy = test_accuracy(result.model_uri, result.tracking_uri, space.config["dataset"])
        epochs = sum(int(t.metrics.get("epoch", 0)) for t in result.trials)
        print(f"\n## {args.space}: a {args.algo} search ({time.strftime('%Y-%m-%d')})\n")
        print(f"- command: `.venv/bin/python benchmarks/vit.py search --space {args.space} "
              f"--algo {args.algo} "
              f"--trials {args.trials} --seed {args.seed}{f' --epochs {args.epochs}' if args.epochs else ''} "
              f"--cpus {args.cpus:g}`")
        print(f"- machine: {machine('torch')}")
        print(f"- budget: {len(result.trials)} trials, {epochs} epochs in all, {args.cpus:g} CPUs a trial, "
              f"wall {wall / 60:.1f} min")
        for rank, trial in enumerate(result.ranked()[:5], 1):
            print(f"  {rank}. val_accuracy {trial.metrics['val_accuracy']:.4f}  {trial.params}")
        print(f"- **best trial's test accuracy {accuracy:.4f}** (10k test images, its logged MLflow model)")


def _plain_epochs(splits: Any, settings: Any, model_config: Any, n_epochs: int) -> float:
    """Samples/s of the same model, optimiser and batches in a plain PyTorch loop, each epoch a
    training pass and a validation pass, as a trial's; epoch 1 (warm-up) is not counted."""
    import torch
    from torch.nn import functional as F

    from tuneforge.trainables.torch.classification import NormalisedClassifier
    from tuneforge.trainables.vit.model import VisionTransformer

    torch.manual_seed(settings.seed)
    model = NormalisedClassifier.for_images(VisionTransformer(model_config), splits.train_images)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    n = len(splits.train_labels)
    seconds = []
    for epoch in range(1, n_epochs + 1):
        model.train()
        order = np.random.default_rng([settings.seed, epoch]).permutation(n)
        started = time.perf_counter()
        for start in range(0, n, settings.batch_size):
            idx = np.sort(order[start:start + settings.batch_size])
            images = torch.from_numpy(np.asarray(splits.train_images[idx])).float().div_(255.0)
            labels = torch.from_numpy(np.asarray(splits.train_labels[idx]))
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            optimizer.step()
        model.eval()
        with torch.no_grad():
            for start in range(0, len(splits.val_labels), 512):
                model(torch.from_numpy(np.array(splits.val_images[start:start + 512])).float().div_(255.0))
        seconds.append(time.perf_counter() - started)
    return n / statistics.median(seconds[1:])


def overhead(args: argparse.Namespace) -> None:
    """Both sides use the same subset of MNIST (an npz file), threads = --cpus, --epochs epochs."""
    import torch

    from tuneforge.trainables.torch.loop import TrainSettings
    from tuneforge.trainables.vit.model import ViTConfig

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        npz = mnist_subset(folder, args.train)
        space = _single_trial_space("vit-mnist", args.epochs)
        space = dataclasses.replace(space, config={**space.config, "dataset": {"npz": str(npz)}})
        splits = load_image_dataset({"npz": str(npz)})
        settings = TrainSettings(epochs=args.epochs, batch_size=space.config.get("batch_size", 128))
        torch.set_num_threads(int(args.cpus))

        def tuned_side(repeat: int) -> float:
            result = search_in_folder(space, folder / f"r{repeat}", args.cpus, algo="grid", seed=0)
            return trial_rate_per_s(result, len(splits.train_labels))

        plain, tuned = alternate(args.repeats,
                                 lambda _: _plain_epochs(splits, settings, ViTConfig(), args.epochs),
                                 tuned_side)
    print(f"\n## ViT trial under tuneforge vs a plain PyTorch loop ({time.strftime('%Y-%m-%d')})\n")
    print(f"- command: `.venv/bin/python benchmarks/vit.py overhead --repeats {args.repeats} "
          f"--train {args.train} --epochs {args.epochs} --cpus {args.cpus:g}`")
    print(f"- machine: {machine('torch')}")
    print(f"- data: the first {args.train} MNIST training images; default ViT; batch {settings.batch_size}; "
          f"{int(args.cpus)} torch threads on both sides")
    print(rate_comparison(tuned, plain, "samples/s"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, handler in (("default", default), ("search", search), ("overhead", overhead)):
        command = commands.add_parser(name)
        command.set_defaults(handler=handler)
        command.add_argument("--space", default="vit-mnist")
        command.add_argument("--epochs", type=int, help="override the space's epochs")
        command.add_argument("--cpus", type=float, default=2.0, help="CPUs (and torch threads) a trial")
        if name == "search":
            command.add_argument("--algo", default="bayes")
            command.add_argument("--trials", type=int, default=8)
            command.add_argument("--seed", type=int, default=0)
        if name == "overhead":
            command.add_argument("--repeats", type=int, default=3)
            command.add_argument("--train", type=int, default=10_000)
    args = parser.parse_args()
    if args.command == "overhead" and not args.epochs:
        args.epochs = 4
    args.handler(args)


if __name__ == "__main__":
    main()
