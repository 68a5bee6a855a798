"""What the benchmark scripts share: the machine line, a search kept in one folder, its metrics,
the alternating overhead measurement and the JSON-lines results files.

The scripts run as ``python benchmarks/X.py``, so this folder is first on ``sys.path`` and they
import this module as ``_common``. Nothing here imports torch, Ray or MLflow until it is called:
every script's ``--help`` stays light.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import statistics
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuneforge import SearchResult, SearchSpace

RESULTS = Path(__file__).resolve().parent / "results"
"""Where benchmarks keep what BENCHMARKS.md points at (pictures, JSON-lines results)."""


def machine(*packages: str) -> str:
    """One line describing this machine, for a report's "machine" entry.

    Architecture, CPU count, Python, then each of ``packages`` with its installed version (in the
    order given), then the OS platform. Where ``"torch"`` is among them, the GPUs torch sees
    follow the CPU count ("no GPU" where none). A package that is not installed reads
    "NAME not installed" rather than failing the report it ends.

    >>> machine("torch")  # doctest: +SKIP
    'x86_64, 16 CPUs, no GPU, Python 3.12.3, torch 2.5.1+cpu, Linux-6.8.0-x86_64-with-glibc2.39'
    """
    hardware = [platform.machine(), f"{os.cpu_count()} CPUs"]
    if "torch" in packages:
        hardware.append(_gpus())
    versions = [_version(package) for package in packages]
    return ", ".join([*hardware, f"Python {platform.python_version()}", *versions, platform.platform()])


def _gpus() -> str:
    import torch

    n_gpus = torch.cuda.device_count()
    return f"{n_gpus} x {torch.cuda.get_device_name(0)}" if n_gpus else "no GPU"


def _version(package: str) -> str:
    try:
        return f"{package} {importlib.metadata.version(package)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{package} not installed"


def tracking_uri_in(folder: Path) -> str:
    """The MLflow tracking URI of the SQLite store that :func:`search_in_folder` keeps in ``folder``."""
    return f"sqlite:///{folder / 'mlflow.db'}"


def search_in_folder(space: SearchSpace | str, folder: Path, cpus_per_trial: float, *,
                     progress: bool = True, **options: Any) -> SearchResult:
    """``tuneforge.search(space, **options)`` with everything it writes kept in ``folder``.

    ``folder`` is created if missing; the MLflow store is ``tracking_uri_in(folder)`` and Ray
    Tune's results go to ``folder / "ray"``, so a kept folder can be read again later (for
    instance by ``benchmarks/transformer.py score``). ``progress`` prints the search's live
    status; an ``on_event`` in ``options`` replaces it. Returns the search's result; raises what
    ``tuneforge.search`` raises (``ConfigError`` for bad options, before anything is created).
    """
    import tuneforge

    folder.mkdir(parents=True, exist_ok=True)
    return tuneforge.search(space, tracking_uri=tracking_uri_in(folder), storage=folder / "ray",
                            cpus_per_trial=cpus_per_trial, progress=progress, **options)


def metric_history(tracking_uri: str, run_id: str, metric: str) -> list[float]:
    """Every value of ``metric`` logged to the run ``run_id``, in order of step.

    MLflow's ``get_metric_history`` does not promise any order, so the values are sorted by step
    (then by timestamp, for a step logged twice). A metric the run never logged gives ``[]``.
    """
    from mlflow import MlflowClient

    points = MlflowClient(tracking_uri).get_metric_history(run_id, metric)
    return [point.value for point in sorted(points, key=lambda point: (point.step, point.timestamp))]


def trial_rate_per_s(result: SearchResult, n_per_epoch: float) -> float:
    """``n_per_epoch`` (samples, tokens) over the median seconds of a trial's whole epochs.

    The seconds are Tune's ``time_this_iter_s`` from the trial's ``result.json``: training and
    everything else an epoch of a trial does (validation, checkpoint, pictures, report). Epoch 1
    (warm-up) is not counted, so the trial must have run at least two. ``result`` must be a
    search of exactly one trial (a ``ValueError`` otherwise).
    """
    [log] = Path(result.experiment_path).glob("*/result.json")
    seconds = [json.loads(line)["time_this_iter_s"] for line in log.read_text().splitlines()]
    return n_per_epoch / statistics.median(seconds[1:])


def alternate(n_repeats: int, plain: Callable[[int], float],
              tuned: Callable[[int], float]) -> tuple[list[float], list[float]]:
    """Each side's rate, measured ``n_repeats`` times in alternating order; (plain, tuned).

    Repeat ``r`` (from 0) calls ``plain(r)`` then ``tuned(r)`` when ``r`` is even, and the other
    way round when it is odd, so that neither side always runs on a warmer machine. Each call
    returns a rate (higher is better); every repeat's pair is written to stderr as it ends.
    """
    plain_rates: list[float] = []
    tuned_rates: list[float] = []
    for repeat in range(n_repeats):
        sides = [(plain, plain_rates), (tuned, tuned_rates)]
        for measure, rates in (sides if repeat % 2 == 0 else sides[::-1]):
            rates.append(measure(repeat))
        print(f"repeat {repeat + 1}: plain {plain_rates[-1]:.0f}/s, tuneforge {tuned_rates[-1]:.0f}/s",
              file=sys.stderr)
    return plain_rates, tuned_rates


def rate_comparison(tuned: list[float], plain: list[float], unit: str) -> str:
    """Three Markdown lines for an overhead report: (a) the ``tuned`` rates, (b) the ``plain``
    ones, both in ``unit``, and the ratio of their medians against the bar that a trial under
    tuneforge keeps at least 0.9 of a plain loop's rate (issues 7, 10 and 11)."""
    a, b = statistics.median(tuned), statistics.median(plain)
    return (f"- (a) tuneforge trial, {unit}: {', '.join(f'{v:.0f}' for v in tuned)}\n"
            f"- (b) plain PyTorch loop, {unit}: {', '.join(f'{v:.0f}' for v in plain)}\n"
            f"- medians: (a) {a:.0f}, (b) {b:.0f}; **ratio (a)/(b) = {a / b:.3f}** (target >= 0.9)")


def mnist_subset(folder: Path, n_images: int) -> Path:
    """The first ``n_images`` MNIST training images and labels as an npz dataset file in ``folder``
    (images of shape (n, 28, 28)), for a trial and a plain loop to read the very same data."""
    import numpy as np

    from tuneforge.trainables.images import load_image_dataset

    mnist = load_image_dataset("mnist")
    npz = folder / "mnist-subset.npz"
    np.savez(npz, images=np.asarray(mnist.train_images[:n_images])[:, 0],
             labels=np.asarray(mnist.train_labels[:n_images]))
    return npz


def with_epochs(space: SearchSpace, epochs: int | None) -> SearchSpace:
    """``space`` with its fixed config's ``epochs`` set to ``epochs``; ``space`` itself where
    ``epochs`` is None or 0 (a script's ``--epochs`` not given)."""
    import dataclasses

    if not epochs:
        return space
    return dataclasses.replace(space, config={**space.config, "epochs": epochs})


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines results file, one a non-blank line; ``[]`` where there is no file."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_json_line(path: Path, row: dict[str, Any],
                     default: Callable[[Any], Any] | None = None) -> None:
    """Append ``row`` as one line to ``path`` (its folder created if missing), at once, so that an
    interrupted benchmark keeps every row it finished. ``default`` is ``json.dumps``'s."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(row, default=default) + "\n")


def write_json_lines(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Replace ``path``'s rows with ``rows`` (a benchmark's ``--replace`` drops what it measures again)."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def measure_and_report(args: Any, spaces: Iterable[str], measure: Callable[[Any, str], None],
                       report: Callable[[Any, str], None]) -> None:
    """For each space: ``measure`` it (unless ``args.report``), then ``report`` it from its results
    file; Tune's and MLflow's chatter about frequent snapshots and copied models is turned off."""
    # Tune warns of frequent experiment snapshots at every epoch of seconds-long trials.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per model copied
    for space in spaces:
        if not args.report:
            measure(args, space)
        report(args, space)


TORCH_FAMILIES = {"vit": "vit-mnist", "dcgan": "dcgan-mnist", "cgan": "cgan-fashion-mnist",
                  "wgan-gp": "wgan-gp-mnist", "darts-net": None, "transformer": "transformer-cmudict"}
"""Each torch family that trains a model of its own, and the bundled space whose fixed config
:func:`family_config` takes (darts-net has none: it trains DARTS_V2)."""


def trial_data(folder: Path, n: int) -> dict[str, Path]:
    """Data every torch family trains on in a short benchmark trial, written to ``folder``: the
    first ``n`` MNIST training images (``npz``) and the first ``n`` CMUdict pairs (``tsv``)."""
    from tuneforge.trainables.transformer.data import load_sequence_dataset

    pairs = load_sequence_dataset("cmudict").train.pairs()[:n]
    tsv = folder / "pairs.tsv"
    tsv.write_text("".join(f"{''.join(s)}\t{' '.join(t)}\n" for s, t in pairs), encoding="utf-8")
    return {"npz": mnist_subset(folder, n), "tsv": tsv}


def family_config(family: str, data: dict[str, Path], epochs: int, **settings: Any) -> dict[str, Any]:
    """One trial's whole config for ``family``: its bundled space's fixed config on ``data``
    (:func:`trial_data`), ``epochs``, seed 0, the family's defaults, then ``settings``."""
    from tuneforge.search_spaces import load_space, parse_space
    from tuneforge.trainables import get_trainable

    if family == "transformer":
        fixed = {**load_space("transformer-cmudict").config, "dataset": {"tsv": str(data["tsv"])},
                 "tokens": {"source": "chars", "target": "words"}}
    elif family == "darts-net":
        fixed = {"dataset": {"npz": str(data["npz"])}, "genotype": "darts-v2"}
    else:
        fixed = {**load_space(TORCH_FAMILIES[family]).config, "dataset": {"npz": str(data["npz"])}}
    fixed = {**{key: value for key, value in fixed.items() if key != "epochs"}, "epochs": epochs}
    space = parse_space({"trainable": family, "metric": "epoch", "mode": "max", "config": fixed,
                         "params": {"seed": {"type": "categorical", "choices": [0]}}},
                        name=f"benchmark-{family}")
    return {**get_trainable(family).prepare(space), "seed": 0, **settings}
