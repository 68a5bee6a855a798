"""The GANs' bar (issue 11): they learn their datasets, and the Tune wrapper costs little.

Two measurements, each printed as Markdown for BENCHMARKS.md:

``search SPACE``  ``tuneforge search SPACE`` (``--algo``, ``--trials``, ``--epochs``); the best
                  trial's ``clf_fid`` per epoch and its fall from the first epoch to the last, its
                  precision and recall, the real-vs-real floor (the same scores of as many real
                  training images, the generator's own data, against the validation images the
                  trials are scored on), for the cGAN its class accuracy
                  beside the classifier's on real test images; the best trial's last sample grid
                  is copied to ``benchmarks/results/<space>-samples.png``, and its logged generator
                  is loaded back from MLflow and checked to generate images in [0, 1].
``overhead``      training samples/s of a DCGAN trial under tuneforge (Ray Tune, MLflow,
                  checkpoints, grids) against the same networks, batches, steps and scoring in a
                  plain PyTorch loop, alternating, ``--repeats`` times, in one invocation; the
                  scores' own cost per epoch beside it.

    .venv/bin/python benchmarks/gans.py search dcgan-mnist --algo bayes --trials 4 --epochs 8
    .venv/bin/python benchmarks/gans.py overhead --repeats 2 --epochs 3
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    RESULTS,
    alternate,
    machine,
    metric_history,
    rate_comparison,
    search_in_folder,
    trial_rate_per_s,
    with_epochs,
)

from tuneforge.search_spaces import CategoricalParam, load_space


def real_floor(dataset: str, n: int, feature_seed: int = 0) -> dict[str, float]:
    """The scores of ``n`` real training images against the first ``n`` validation images (the set
    a trial's samples are scored against): what a generator that reproduced its training data
    exactly would get. (MNIST's test images come from other writers and score worse.)"""
    import torch

    from tuneforge.trainables.gans.features import feature_classifier
    from tuneforge.trainables.gans.metrics import SampleQuality
    from tuneforge.trainables.images import load_image_dataset

    splits = load_image_dataset(dataset)
    classifier = feature_classifier(dataset, splits, seed=feature_seed)
    unit = lambda images: torch.from_numpy(np.asarray(images, dtype=np.float32) / 255.0)  # noqa: E731
    return SampleQuality(classifier.network, unit(splits.val_images[:n]))(unit(splits.train_images[:n]))


def _check_logged_generator(model_uri: str, run_params: Mapping[str, str]) -> str:
    """Load the logged generator and generate 16 images per its contract; a one-line summary."""
    import mlflow.pytorch
    import torch

    generator = mlflow.pytorch.load_model(model_uri)  # the tracking URI set by search()
    latent_dim = int(run_params["latent_dim"])
    z = torch.randn(16, latent_dim)
    if "n_classes" in run_params:
        images = generator(z, torch.arange(16) % int(run_params["n_classes"]))
    else:
        images = generator(z)
    images = images.detach()
    return (f"`mlflow.pytorch.load_model(\"{model_uri}\")` generates {tuple(images.shape)} images in "
            f"[{float(images.min()):.3f}, {float(images.max()):.3f}]")


def search(args: argparse.Namespace) -> None:
    from mlflow import MlflowClient

    space = with_epochs(load_space(args.space), args.epochs)
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="gan-bench-"))
    started = time.perf_counter()
    options = {"scheduler": args.scheduler} if args.scheduler else {}
    result = search_in_folder(space, folder, args.cpus, algo=args.algo, trials=args.trials, seed=args.seed,
                              **options)
    wall = time.perf_counter() - started
    import mlflow

    best, uri = result.best, result.tracking_uri
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    run = client.get_run(best.run_id)
    fid = metric_history(uri, best.run_id, "clf_fid")
    epochs = sum(int(t.metrics.get("epoch", 0)) for t in result.trials)
    conditional = "class_accuracy" in best.metrics
    floor = real_floor(space.config["dataset"], n=5_000)
    RESULTS.mkdir(exist_ok=True)
    grid = RESULTS / f"{args.space}-samples.png"
    with tempfile.TemporaryDirectory() as tmp:
        last = sorted(client.list_artifacts(best.run_id, "samples"), key=lambda f: f.path)[-1].path
        shutil.copy(client.download_artifacts(best.run_id, last, tmp), grid)
    print(f"\n## {args.space}: a {args.algo} search ({time.strftime('%Y-%m-%d')})\n")
    print(f"- command: `.venv/bin/python benchmarks/gans.py search {args.space} --algo {args.algo} "
          f"--trials {args.trials} --seed {args.seed}{f' --epochs {args.epochs}' if args.epochs else ''}"
          f"{f' --scheduler {args.scheduler}' if args.scheduler else ''} --cpus {args.cpus:g}`")
    print(f"- machine: {machine('torch')}")
    print(f"- budget: {len(result.trials)} trials, {epochs} epochs in all, {args.cpus:g} CPUs a trial, "
          f"wall {wall / 60:.1f} min (results kept in {folder}); the search {result.status.value}")
    for rank, trial in enumerate(result.ranked(), 1):
        m = trial.metrics
        extra = f" class_accuracy {m['class_accuracy']:.3f}" if conditional else ""
        print(f"  {rank}. clf_fid {m['clf_fid']:.3f} precision {m['precision']:.3f} recall {m['recall']:.3f}"
              f"{extra} after {int(m['epoch'])} epochs ({m['epoch_s']:.0f} s the last): {trial.params}")
    print(f"- best trial's clf_fid per epoch: {', '.join(f'{v:.2f}' for v in fid)}")
    print(f"- **fall from the first epoch to the last: {fid[0] / fid[-1]:.1f}x** (bar >= 10x); "
          f"**precision {best.metrics['precision']:.3f}, recall {best.metrics['recall']:.3f}** "
          f"(bar >= 0.6 each)")
    print(f"- real-vs-real floor (5,000 training images against the 5,000 validation images the trials "
          f"are scored on): clf_fid {floor['clf_fid']:.3f}, clf_kid {floor['clf_kid']:.4f}, precision "
          f"{floor['precision']:.3f}, recall {floor['recall']:.3f}; the feature classifier's test accuracy "
          f"{best.metrics['classifier_accuracy']:.4f}")
    if conditional:
        print(f"- **class accuracy of generated samples: {best.metrics['class_accuracy']:.3f}** "
              f"(bar >= 0.8), "
              f"the classifier's on real test images {best.metrics['classifier_accuracy']:.3f}")
    print(f"- the logged generator: {_check_logged_generator(result.model_uri, run.data.params)}")
    print(f"- the best trial's last grid ({last}): `benchmarks/results/{grid.name}`")


def _plain_epochs(data: Any, settings: Any, gan: Any, model_config: Any,
                  n_epochs: int) -> tuple[float, float]:
    """Training samples/s of the same DCGAN networks, optimisers, batches and steps in a plain
    PyTorch loop, each epoch followed by the same scoring of 5,000 samples; and the scoring's
    seconds. Medians over the epochs after the first."""
    import torch

    from tuneforge.trainables.gans import dcgan
    from tuneforge.trainables.gans.features import feature_classifier
    from tuneforge.trainables.gans.metrics import SampleQuality

    torch.manual_seed(settings.seed)
    splits = data
    generator, discriminator = dcgan.Generator(model_config), dcgan.Discriminator(model_config)
    g_opt = torch.optim.Adam(generator.parameters(), lr=settings.lr, betas=(gan.beta1, gan.beta2))
    d_opt = torch.optim.Adam(discriminator.parameters(), lr=gan.d_lr or settings.lr,
                             betas=(gan.beta1, gan.beta2))
    classifier = feature_classifier("mnist", splits, seed=gan.feature_seed).network
    unit = lambda images: torch.from_numpy(np.asarray(images, dtype=np.float32) / 255.0)  # noqa: E731
    quality = SampleQuality(classifier, unit(splits.val_images[:5_000]))
    fixed = torch.randn(5_000, model_config.latent_dim, generator=torch.Generator().manual_seed(0))
    n, rates, scoring = len(splits.train_labels), [], []
    for epoch in range(1, n_epochs + 1):
        generator.train()
        discriminator.train()
        order = np.random.default_rng([settings.seed, epoch]).permutation(n)
        started = time.perf_counter()
        for start in range(0, n, settings.batch_size):
            idx = np.sort(order[start:start + settings.batch_size])
            real = unit(splits.train_images[idx]) * 2 - 1
            with torch.no_grad():
                fake = generator(torch.randn(len(idx), model_config.latent_dim))
            d_loss = dcgan.discriminator_loss(discriminator(real), discriminator(fake))
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
            z = torch.randn(len(idx), model_config.latent_dim)
            g_loss = dcgan.generator_loss(discriminator(generator(z)))
            g_opt.zero_grad(set_to_none=True)
            g_loss.backward()
            g_opt.step()
        trained = time.perf_counter()
        generator.eval()
        with torch.no_grad():
            quality(torch.cat([(generator(z) + 1) / 2 for z in fixed.split(500)]))
        scoring.append(time.perf_counter() - trained)
        rates.append(n / (time.perf_counter() - started))
    return statistics.median(rates[1:]), statistics.median(scoring[1:])


def overhead(args: argparse.Namespace) -> None:
    """Both sides: dcgan-mnist's defaults at widths 32, 1 torch thread, the whole MNIST training split."""
    import torch

    from tuneforge.trainables.gans import DCGAN
    from tuneforge.trainables.images import load_image_dataset
    from tuneforge.trainables.torch.loop import split_config

    config = {"dataset": "mnist", "epochs": args.epochs, "g_width": 32, "d_width": 32}
    space = dataclasses.replace(load_space("dcgan-mnist"), config=config,
                                params=(CategoricalParam("seed", (0,)),), source=None)
    prepared = DCGAN.prepare(dict(config), None)
    settings, model_config = split_config(DCGAN, {**prepared, "seed": 0})
    gan = DCGAN.gan_settings(prepared)
    splits = load_image_dataset("mnist")
    torch.set_num_threads(int(args.cpus))
    scoring: list[float] = []

    def plain_side(repeat: int) -> float:
        rate, seconds = _plain_epochs(splits, settings, gan, model_config, args.epochs)
        scoring.append(seconds)
        return rate

    def tuned_side(repeat: int) -> float:
        # training, scoring, grid, checkpoint and report: the trial's whole epochs
        result = search_in_folder(space, Path(tmp) / f"r{repeat}", args.cpus, algo="grid", seed=0)
        return trial_rate_per_s(result, len(splits.train_labels))

    with tempfile.TemporaryDirectory() as tmp:
        plain, tuned = alternate(args.repeats, plain_side, tuned_side)
    print(f"\n## DCGAN trial under tuneforge vs a plain PyTorch loop ({time.strftime('%Y-%m-%d')})\n")
    print(f"- command: `.venv/bin/python benchmarks/gans.py overhead --repeats {args.repeats} "
          f"--epochs {args.epochs} --cpus {args.cpus:g}`")
    print(f"- machine: {machine('torch')}")
    print(f"- data: MNIST's {len(splits.train_labels)} training images; DCGAN widths 32, latent "
          f"{model_config.latent_dim}, batch {settings.batch_size}; {int(args.cpus)} torch threads on both "
          f"sides; each epoch a training pass and the scoring of 5,000 samples against 5,000 validation "
          f"images")
    print(rate_comparison(tuned, plain, "training images a second of whole epochs"))
    print(f"- the scores' own cost (generating 5,000 samples and their clf_fid, clf_kid, precision and "
          f"recall), median per epoch: {statistics.median(scoring):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, handler in (("search", search), ("overhead", overhead)):
        command = commands.add_parser(name)
        command.set_defaults(handler=handler)
        command.add_argument("--epochs", type=int, help="override the space's epochs")
        command.add_argument("--cpus", type=float, default=1.0, help="CPUs (and torch threads) a trial")
        if name == "search":
            command.add_argument("space")
            command.add_argument("--algo", default="bayes")
            command.add_argument("--trials", type=int, default=4)
            command.add_argument("--seed", type=int, default=0)
            command.add_argument("--scheduler")
            command.add_argument("--keep", help="keep the MLflow store and Ray results in this folder")
        if name == "overhead":
            command.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.command == "overhead" and not args.epochs:
        args.epochs = 3
    args.handler(args)


if __name__ == "__main__":
    main()
