"""``compile: true`` against eager mode, per torch family (issue 27): training samples/s over a
trial's epochs, compile time included.

For each family, one trial of its bundled space's fixed config at the family's defaults (nothing
searched), on a subset of its data, with ``compile`` false and true, ``--repeats`` times in
alternating order, in one invocation: the trial function Ray Tune runs (:func:`run_trial`), each
trial a fresh worker process (as a search runs it), ``--cpus`` CPUs and torch threads. The rate is
every epoch's training samples over the sum of the epochs' training passes (``epoch_s``), so the
first epoch's compilation counts. A family whose median ratio is at least
:data:`DEFAULT_ON_RATIO` should have ``compile`` on by default. Each trial is one line of
``benchmarks/results/compile.jsonl`` (an interrupted invocation goes on where it stopped);
prints Markdown for BENCHMARKS.md.

    .venv/bin/python benchmarks/compile.py --families vit dcgan transformer --epochs 3 --repeats 2
    .venv/bin/python benchmarks/compile.py --report
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    RESULTS,
    TORCH_FAMILIES,
    append_json_line,
    family_config,
    machine,
    read_json_lines,
    trial_data,
)

from tuneforge.trainables import get_trainable

RESULTS_FILE = RESULTS / "compile.jsonl"
DEFAULT_ON_RATIO = 1.2
"""Issue 27: on by default where compiling raises samples/s by at least this much."""


def _trial(family: str, config: dict[str, Any], cpus: float, storage: Path, name: str) -> dict[str, float]:
    """One trial through Ray Tune: samples/s over its epochs, its first epoch's seconds, wall."""
    from ray import tune

    function = tune.with_resources(get_trainable(family).function, {"cpu": cpus})
    started = time.perf_counter()
    [result] = tune.Tuner(function, param_space=config,
                          run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0)).fit()
    wall = time.perf_counter() - started
    if result.error is not None:
        raise result.error
    frame = result.metrics_dataframe
    samples = float((frame["samples_per_s"] * frame["epoch_s"]).sum())
    seconds = frame["epoch_s"]
    return {"samples_per_s": samples / float(seconds.sum()), "first_epoch_s": float(seconds.iloc[0]),
            "later_epoch_s": float(seconds.iloc[1:].median()) if len(frame) > 1 else float("nan"),
            "epochs": float(len(frame)), "wall_s": wall}


def measure(args: argparse.Namespace) -> None:
    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    done = {(row["family"], row["compile"], row["repeat"]) for row in read_json_lines(RESULTS_FILE)
            if row["epochs_asked"] == args.epochs and row["train"] == args.train}
    ray.init(address="local", num_cpus=int(args.cpus), log_to_driver=False, logging_level="WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = trial_data(folder, args.train)
        for family in args.families:
            for repeat in range(args.repeats):
                for compile_ in ((False, True) if repeat % 2 == 0 else (True, False)):
                    if (family, compile_, repeat) in done:
                        continue
                    config = family_config(family, data, args.epochs, compile=compile_)
                    row = _trial(family, config, args.cpus, folder / "ray", f"{family}-{compile_}-{repeat}")
                    row.update(family=family, compile=compile_, repeat=repeat, epochs_asked=args.epochs,
                               train=args.train, cpus=args.cpus)
                    append_json_line(RESULTS_FILE, row)
                    print(f"{family} compile={compile_} repeat {repeat + 1}: {row['samples_per_s']:.0f} "
                          f"samples/s (first epoch {row['first_epoch_s']:.0f} s)", file=sys.stderr,
                          flush=True)
    ray.shutdown()


def report(args: argparse.Namespace) -> None:
    rows = [row for row in read_json_lines(RESULTS_FILE)
            if row["epochs_asked"] == args.epochs and row["train"] == args.train]
    print(f"\n## torch.compile against eager mode, per family ({time.strftime('%Y-%m-%d')})\n")
    print(f"- command: `.venv/bin/python benchmarks/compile.py --families {' '.join(args.families)} "
          f"--epochs {args.epochs} --train {args.train} --repeats {args.repeats} --cpus {args.cpus:g}`")
    print(f"- machine: {machine('torch', 'ray')}")
    print(f"- each trial: the family's bundled space's fixed config at the defaults, {args.epochs} epochs on "
          f"the first {args.train} MNIST images (CMUdict pairs for the transformer), {args.cpus:g} CPUs; "
          "samples/s = all epochs' training samples over their training passes' seconds, the first "
          "epoch's compilation included\n")
    print("| family | eager samples/s | compiled samples/s | ratio (medians) | first epoch s, eager / "
          f"compiled | later epochs s, eager / compiled | on by default (>= {DEFAULT_ON_RATIO}x) |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for family in args.families:
        sides = {c: [r for r in rows if r["family"] == family and r["compile"] is c] for c in (False, True)}
        if not sides[False] or not sides[True]:
            continue
        med = {c: {k: statistics.median(r[k] for r in sides[c]) for k in ("samples_per_s", "first_epoch_s",
                                                                          "later_epoch_s")}
               for c in (False, True)}
        ratio = med[True]["samples_per_s"] / med[False]["samples_per_s"]
        rates = {c: ", ".join(f"{r['samples_per_s']:.0f}" for r in sides[c]) for c in (False, True)}
        print(f"| {family} | {rates[False]} | {rates[True]} | {ratio:.2f}x "
              f"| {med[False]['first_epoch_s']:.1f} / {med[True]['first_epoch_s']:.1f} "
              f"| {med[False]['later_epoch_s']:.1f} / {med[True]['later_epoch_s']:.1f} "
              f"| {'yes' if ratio >= DEFAULT_ON_RATIO else 'no'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    compiling = [family for family in TORCH_FAMILIES if get_trainable(family).compiles]  # not WGAN-GP's
    parser.add_argument("--families", nargs="+", choices=compiling, default=compiling)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train", type=int, default=10_000, help="training images (pairs) of the subset")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cpus", type=float, default=2.0)
    parser.add_argument("--report", action="store_true", help="only the table")
    args = parser.parse_args()
    if not args.report:
        measure(args)
    report(args)


if __name__ == "__main__":
    main()
