"""Early stopping's bar (issue 8): ASHA keeps the best accuracy for at most half the epochs.

For each seed and each pairing of a search algorithm and a scheduler, one ``tuneforge.search``
of a per-epoch space (default ``vit-digits``, 15 epochs a trial), each with its own temporary
MLflow store and Tune storage folder:

``random``       random search, every trial runs its epochs
``random+asha``  the same seeded random trials under ASHA (``--scheduler asha``)
``bayes``        tuneforge's GP searcher, no scheduler
``bayes+asha``   the GP searcher under ASHA, which sees the stopped trials by its own rule
``bohb``         Ray Tune's own pairing, ``TuneBOHB`` + ``HyperBandForBOHB``, through a plain
                 ``tune.Tuner`` on tuneforge's trainable function and prepared config (needs
                 ``hpbandster`` and ``ConfigSpace``; skipped, with a note, where they are missing)

A search's result is its best trial's last reported validation accuracy; its cost is the epochs
its trials ran (one per reported result, counted as they arrive). Each measured search is one
line of a JSON-lines file, keyed by (space, pairing, seed, trials, smoke), so a rerun measures
only what is missing (``--replace`` measures the named pairings again).

    .venv/bin/python benchmarks/schedulers.py                           # 3 seeds x 5 pairings x 20 trials
    .venv/bin/python benchmarks/schedulers.py --trials 4 --seeds 0      # a quick check
    .venv/bin/python benchmarks/schedulers.py --report                  # the tables, from the file
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import (
    RESULTS,
    append_json_line,
    machine,
    read_json_lines,
    search_in_folder,
    tracking_uri_in,
    write_json_lines,
)

DEFAULT_RESULTS = RESULTS / "schedulers.jsonl"
PAIRINGS = ("random", "random+asha", "bayes", "bayes+asha", "bohb")
# (a, b, whether issue 8's bar judges a against b); the others are shown side by side.
COMPARISONS = (("random+asha", "random", True), ("bayes+asha", "bayes", True),
               ("bohb", "bayes", False), ("bayes+asha", "bohb", False))
MAX_LOSS_POINTS = 0.5
MAX_EPOCH_RATIO = 0.5


def _row(args: argparse.Namespace, pairing: str, seed: int, **measured: Any) -> dict[str, Any]:
    return {"space": args.space, "pairing": pairing, "seed": seed, "trials": args.trials,
            "smoke": args.smoke, "cpus_per_trial": args.cpus, "date": time.strftime("%Y-%m-%d"),
            **measured}


def _summary(trials: list[dict[str, Any]], epochs: int, wall_s: float) -> dict[str, Any]:
    """The measured part of a row from its trials (status, epochs, last val_accuracy)."""
    scores = [t["val_accuracy"] for t in trials if t["val_accuracy"] is not None]
    return {"best_val_accuracy": max(scores) if scores else None, "total_epochs": epochs,
            "n_stopped": sum(t["stopped"] for t in trials), "n_failed": sum(t["failed"] for t in trials),
            "n_trials_ended": len(trials), "wall_s": wall_s, "per_trial": trials}


def run_tuneforge(args: argparse.Namespace, pairing: str, seed: int, folder: Path) -> dict[str, Any]:
    """One ``tuneforge.search``; epochs are its ``TrialResult`` events (one per reported result)."""
    from tuneforge.platform.events import TrialEnded, TrialResult
    from tuneforge.schema import TrialStatus

    algo, _, scheduler = pairing.partition("+")
    n_results = 0

    def on_event(event: Any) -> None:
        nonlocal n_results
        if isinstance(event, TrialResult):
            n_results += 1
        elif isinstance(event, TrialEnded):
            record = event.record
            print(f"    trial {event.n_ended}/{event.n_trials}: {record.status.value}, "
                  f"{record.iterations} epochs, val_accuracy {record.metrics.get('val_accuracy')}",
                  file=sys.stderr, flush=True)

    options = {"grace_period": args.grace_period} if args.grace_period else {}
    started = time.perf_counter()
    result = search_in_folder(args.space, folder, args.cpus, algo=algo, scheduler=scheduler or "none",
                              trials=args.trials, seed=seed, smoke=args.smoke, on_event=on_event, **options)
    wall_s = time.perf_counter() - started
    trials = [{"status": t.status.value, "epochs": t.iterations,
               "val_accuracy": t.metrics.get("val_accuracy"),
               "stopped": t.status is TrialStatus.STOPPED, "failed": t.status is TrialStatus.FAILED,
               "params": t.params} for t in result.trials]
    row = _summary(trials, n_results, wall_s)
    row["total_iterations"] = sum(t.iterations for t in result.trials)  # the parent run's metric
    assert result.best_score is None or abs(result.best_score - row["best_val_accuracy"]) < 1e-12, \
        "the search's best score is the best trial's last result"
    return row


def _bohb_available() -> str | None:
    """None if TuneBOHB can run here, else why not."""
    try:
        import ConfigSpace  # noqa: F401
        import hpbandster  # noqa: F401
    except ImportError as exc:
        return f"TuneBOHB needs hpbandster and ConfigSpace ({exc})"
    return None


def run_bohb(args: argparse.Namespace, seed: int, folder: Path) -> dict[str, Any]:
    """Ray Tune's BOHB on tuneforge's trainable function and prepared config, no MLflow.

    HyperBandForBOHB pauses trials and resumes them from their checkpoints, so a trial's epochs
    are counted as results arrive (a resumed trial does not redo its checkpointed epochs)."""
    import ray
    from ray import tune
    from ray.tune.schedulers import HyperBandForBOHB
    from ray.tune.search.bohb import TuneBOHB

    from tuneforge.platform.planning import SearchOptions, plan_search, prepare_trials
    from tuneforge.search_spaces import to_tune_domains

    plan = plan_search(args.space, SearchOptions(algo="random", trials=args.trials, seed=seed,
                                                 scheduler="asha", smoke=args.smoke,
                                                 tracking_uri=tracking_uri_in(folder),
                                                 cpus_per_trial=args.cpus, storage=folder / "ray"))
    space, max_epochs = plan.space, plan.schedule.max_epochs
    n_results = [0]

    class CountResults(tune.Callback):
        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                            **info: Any) -> None:
            n_results[0] += 1

    started = time.perf_counter()
    ray.init(address="local", log_to_driver=False, logging_level="WARNING")
    try:
        config = prepare_trials(plan)
        tuner = tune.Tuner(
            tune.with_resources(_builtin_values(plan.trainable.function), {"cpu": args.cpus}),
            param_space={**config, **to_tune_domains(space)},
            tune_config=tune.TuneConfig(
                metric=space.metric, mode=space.mode, num_samples=args.trials,
                search_alg=TuneBOHB(seed=seed),
                scheduler=HyperBandForBOHB(time_attr="training_iteration", max_t=max_epochs)),
            run_config=tune.RunConfig(name="bohb", storage_path=str(folder / "ray"), verbose=0,
                                      callbacks=[CountResults()]))
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # the old engine is silent at verbose=0
        grid = tuner.fit()
    finally:
        ray.shutdown()
    wall_s = time.perf_counter() - started
    trials = []
    for result in grid:
        metrics = result.metrics or {}
        epochs = int(metrics.get("training_iteration", 0))
        trials.append({"status": "FAILED" if result.error else "ENDED", "epochs": epochs,
                       "val_accuracy": None if result.error else metrics.get(space.metric),
                       "stopped": result.error is None and epochs < max_epochs,
                       "failed": result.error is not None,
                       "params": {name: _plain(metrics.get("config", {}).get(name))
                                  for name in space.param_names}})
    row = _summary(trials, n_results[0], wall_s)
    row["total_iterations"] = sum(t["epochs"] for t in trials)
    return row


def _builtin_values(function: Callable[[dict], None]) -> Callable[[dict], None]:
    """``function`` given a config of builtins: ConfigSpace suggests categorical ints as numpy
    integers, which the ViT's config refuses (a positive ``int``)."""

    def trainable(config: dict) -> None:
        function({name: _plain(value) for name, value in config.items()})

    trainable.__name__ = getattr(function, "__name__", "trainable")
    return trainable


def _plain(value: Any) -> Any:
    """A numpy scalar as a builtin, for JSON."""
    import numpy as np

    return value.item() if isinstance(value, np.generic) else value


def _key(row: dict[str, Any]) -> tuple:
    return row["space"], row["pairing"], row["seed"], row["trials"], row.get("smoke", False)


def measure(args: argparse.Namespace) -> None:
    rows = read_json_lines(args.results)
    if args.replace:
        again = {_key(_row(args, pairing, seed))
                 for pairing in args.pairings for seed in args.seeds}
        rows = [r for r in rows if _key(r) not in again]
        write_json_lines(args.results, rows)
    done = {_key(r) for r in rows}
    runners: dict[str, Callable[[int, Path], dict[str, Any]]] = {
        pairing: (lambda seed, folder, p=pairing: run_tuneforge(args, p, seed, folder))
        for pairing in PAIRINGS if pairing != "bohb"}
    why_not = _bohb_available()
    if why_not is None:
        runners["bohb"] = lambda seed, folder: run_bohb(args, seed, folder)
    elif "bohb" in args.pairings:
        print(f"bohb skipped: {why_not}", file=sys.stderr)
    for seed in args.seeds:
        for pairing in (p for p in args.pairings if p in runners):
            row = _row(args, pairing, seed)
            if _key(row) in done:
                continue
            print(f"{args.space} {pairing} seed {seed}, {args.trials} trials ...",
                  file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory(prefix="schedulers-") as folder:
                row.update(runners[pairing](seed, Path(folder)))
            if row["best_val_accuracy"] is None:
                print(f"  no trial reported {args.space}'s metric ({row['n_failed']} failed); not kept",
                      file=sys.stderr, flush=True)
                continue
            append_json_line(args.results, row, default=_plain)
            print(f"  best {row['best_val_accuracy']}, {row['total_epochs']} epochs, "
                  f"{row['n_stopped']} stopped, {row['wall_s']:.0f} s", file=sys.stderr, flush=True)


def _cell(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def report(args: argparse.Namespace) -> None:
    wanted = (args.space, args.trials, args.smoke)
    rows = {(r["pairing"], r["seed"]): r for r in read_json_lines(args.results)
            if (r["space"], r["trials"], r.get("smoke", False)) == wanted}
    seeds = sorted({seed for _, seed in rows})
    pairings = [p for p in PAIRINGS if any((p, s) in rows for s in seeds)]
    print(f"\n### {args.space}, {args.trials} trials a search: per seed and mean\n")
    print("| pairing | seed | best val_accuracy | total epochs | trials stopped | wall s |")
    print("|---|---|---|---|---|---|")
    for pairing in pairings:
        own = [rows[(pairing, s)] for s in seeds if (pairing, s) in rows]
        for row in own:
            print(f"| {pairing} | {row['seed']} | {_cell(row['best_val_accuracy'], '.4f')} | "
                  f"{row['total_epochs']} | {row['n_stopped']} | {row['wall_s']:.0f} |")
        mean = {name: _mean([r[name] for r in own])
                for name in ("best_val_accuracy", "total_epochs", "n_stopped", "wall_s")}
        print(f"| **{pairing}** | **mean** | **{_cell(mean['best_val_accuracy'], '.4f')}** | "
              f"**{mean['total_epochs']:.1f}** | {mean['n_stopped']:.1f} | {mean['wall_s']:.0f} |")
    _report_comparisons(rows, seeds)


def _report_comparisons(rows: dict[tuple[str, int], dict[str, Any]], seeds: list[int]) -> None:
    print(f"\n### The bar: best accuracy within {MAX_LOSS_POINTS} points, "
          f"for <= {MAX_EPOCH_RATIO}x the epochs\n")
    print("| comparison | " + " | ".join(f"seed {s}: Δ points, epochs ratio" for s in seeds)
          + " | mean Δ points | epochs ratio of the means | met |")
    print("|---" * (len(seeds) + 4) + "|")
    for scheduled, plain, is_bar in COMPARISONS:
        pairs = [(rows[(scheduled, s)], rows[(plain, s)]) for s in seeds
                 if (scheduled, s) in rows and (plain, s) in rows]
        if not pairs:
            continue
        cells = [f"{100 * (a['best_val_accuracy'] - b['best_val_accuracy']):+.2f}, "
                 f"{a['total_epochs'] / b['total_epochs']:.3f}" for a, b in pairs]
        delta = 100 * statistics.fmean(a["best_val_accuracy"] - b["best_val_accuracy"] for a, b in pairs)
        ratio = (statistics.fmean(a["total_epochs"] for a, _ in pairs)
                 / statistics.fmean(b["total_epochs"] for _, b in pairs))
        met = delta >= -MAX_LOSS_POINTS and ratio <= MAX_EPOCH_RATIO
        verdict = ("yes" if met else "**no**") if is_bar else "(not a bar)"
        print(f"| {scheduled} vs {plain} | " + " | ".join(cells)
              + f" | **{delta:+.3f}** | **{ratio:.3f}** | {verdict} |")
    print(f"\nMachine: {machine('torch')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="vit-digits")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pairings", nargs="+", default=list(PAIRINGS), choices=PAIRINGS)
    parser.add_argument("--cpus", type=float, default=1.0, help="CPUs (and torch threads) a trial")
    parser.add_argument("--grace-period", type=int, help="ASHA's; default: the space's, else 1")
    parser.add_argument("--smoke", action="store_true", help="tuneforge's --smoke: seconds a trial")
    parser.add_argument("--replace", action="store_true", help="measure these pairings again")
    parser.add_argument("--report", action="store_true", help="only print the tables")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="the JSON-lines results file")
    args = parser.parse_args()
    # Tune warns of frequent experiment snapshots at every epoch of these seconds-long trials.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if not args.report:
        measure(args)
    report(args)


if __name__ == "__main__":
    main()
