"""Warm starts from MLflow (issue 24): a bayes search that learns from an earlier one.

For each space (``vit-digits``, ``svc-wine``) and seed s, three 20-trial bayes searches:

``earlier``  seed s, in a store of its own
``warm``     seed s + 1000, in the same store, ``warm_start=<the earlier search's parent run id>``
``cold``     seed s + 1000, in another store, nothing to learn from

All three run with ``scheduler="none"`` and ``start_from="none"``, so that the warm start is the
only difference between ``warm`` and ``cold``. Measured: the trial number (in start order, from 1)
at which the warm search's own trials first reach the cold search's final best (issue 24's
target: at most 10 of 20), and whether the warm search ends better than the cold one, each as a
mean over the seeds. Each (space, seed) is one line of a JSON-lines file, so a rerun measures only
what is missing (a seed that was cut off runs its three searches again).

    .venv/bin/python benchmarks/warm_start.py                           # 2 spaces x 5 seeds x 3 searches
    .venv/bin/python benchmarks/warm_start.py --space svc-wine --seeds 2
    .venv/bin/python benchmarks/warm_start.py --space svc-wine --smoke  # a quick check
    .venv/bin/python benchmarks/warm_start.py --report                  # the tables, from the file
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import RESULTS, append_json_line, machine, measure_and_report, read_json_lines, search_in_folder

SPACES = ("vit-digits", "svc-wine")
WARM_SEED_OFFSET = 1000
SAME_SETTINGS = {"algo": "bayes", "scheduler": "none", "start_from": "none"}
"""Every search's: only ``warm_start`` differs between the warm and the cold search."""
SMOKE_TRIALS = 4
SMOKE_SEEDS = 1


def results_path(smoke: bool) -> Path:
    return RESULTS / f"warm-start{'-smoke' if smoke else ''}.jsonl"


def _key(row: dict[str, Any]) -> tuple:
    return row["space"], row["seed"], row["trials"], row["smoke"]


def reach_target(n_trials: int) -> int:
    """Issue 24's bar: the cold search's final best within half the trials (10 of 20)."""
    return n_trials // 2


def _search(space: str, folder: Path, args: argparse.Namespace, seed: int, label: str,
            **options: Any) -> tuple[Any, dict[str, Any]]:
    """One bayes search of ``args.trials`` trials in ``folder``; its result, and its wall seconds
    and (warm-started) how many earlier trials it used and why it skipped the others."""
    from tuneforge.platform.events import SearchStarted

    print(f"  {label}: seed {seed}{', warm-started' if 'warm_start' in options else ''} ...",
          file=sys.stderr, flush=True)
    seen: dict[str, Any] = {}

    def on_event(event: Any) -> None:
        warm = event.plan.warm_start if isinstance(event, SearchStarted) else None
        if warm is not None:
            seen.update(n_used=len(warm.trials), skipped=dict(warm.skipped))

    started = time.perf_counter()
    result = search_in_folder(space, folder, args.cpus, on_event=on_event, trials=args.trials, seed=seed,
                              smoke=args.smoke and _shrinks(space), **SAME_SETTINGS, **options)
    return result, {"wall_s": time.perf_counter() - started, **seen}


def _shrinks(space: str) -> bool:
    """Whether ``--smoke`` applies to the space's family (a per-epoch one: vit-digits, not svc-wine,
    whose trials are seconds already)."""
    from tuneforge.search_spaces import load_space
    from tuneforge.trainables import get_trainable

    return get_trainable(load_space(space).trainable).smoke


def best_by_trial(result: Any) -> list[float | None]:
    """The best metric among the first k trials, k = 1 .. n, in the order the trials started (a
    trial that did not score keeps the best before it; None before any scored)."""
    better = max if result.mode == "max" else min
    scored = {t.trial_id for t in result.ranked()}
    curve: list[float | None] = []
    best = None
    for trial in sorted(result.trials, key=lambda t: t.started_at):
        if trial.trial_id in scored:
            value = trial.metrics[result.metric]
            best = value if best is None else better(best, value)
        curve.append(best)
    return curve


def first_reach(curve: list[float | None], target: float, mode: str) -> int | None:
    """The first trial number (from 1) whose best so far is at least as good as ``target``."""
    for number, best in enumerate(curve, 1):
        if best is not None and (best >= target if mode == "max" else best <= target):
            return number
    return None


def _warm_start_tag(result: Any) -> str | None:
    """The warm search's lineage tag (the source searches' parent run ids), as logged."""
    from mlflow import MlflowClient

    from tuneforge.schema import Tags

    return MlflowClient(result.tracking_uri).get_run(result.parent_run_id).data.tags.get(Tags.WARM_START)


def measure_seed(space: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """The three searches of ``seed`` and what they measured (a row without the key)."""
    with tempfile.TemporaryDirectory(prefix="warm-start-") as tmp:
        shared, alone = Path(tmp) / "earlier-and-warm", Path(tmp) / "cold"
        earlier, earlier_seen = _search(space, shared, args, seed, "earlier")
        warm, warm_seen = _search(space, shared, args, seed + WARM_SEED_OFFSET, "warm",
                                  warm_start=earlier.parent_run_id)
        cold, cold_seen = _search(space, alone, args, seed + WARM_SEED_OFFSET, "cold")
        warm_tag = _warm_start_tag(warm)
    if warm.best_score is None or cold.best_score is None:
        return {"warm_best": warm.best_score, "cold_best": cold.best_score}
    warm_curve, cold_curve = best_by_trial(warm), best_by_trial(cold)
    better = warm.best_score > cold.best_score if warm.mode == "max" else warm.best_score < cold.best_score
    return {"metric": warm.metric, "mode": warm.mode, "earlier_best": earlier.best_score,
            "warm_best": warm.best_score, "cold_best": cold.best_score,
            "reach_trial": first_reach(warm_curve, cold.best_score, warm.mode),
            "warm_beats_cold": better, "warm_curve": warm_curve, "cold_curve": cold_curve,
            "n_trials": {"earlier": len(earlier.trials), "warm": len(warm.trials), "cold": len(cold.trials)},
            "wall_s": {"earlier": earlier_seen["wall_s"], "warm": warm_seen["wall_s"],
                       "cold": cold_seen["wall_s"]},
            "warm_trials_used": warm_seen.get("n_used"), "warm_trials_skipped": warm_seen.get("skipped"),
            "earlier_parent_run_id": earlier.parent_run_id, "warm_start_tag": warm_tag}


def measure(args: argparse.Namespace, space: str) -> None:
    path = results_path(args.smoke)
    done = {_key(row) for row in read_json_lines(path)}
    for seed in range(args.seeds):
        row = {"space": space, "seed": seed, "trials": args.trials, "smoke": args.smoke}
        if _key(row) in done:
            continue
        print(f"{space} seed {seed}: earlier, warm and cold bayes searches of {args.trials} trials",
              file=sys.stderr, flush=True)
        measured = measure_seed(space, seed, args)
        if None in (measured["warm_best"], measured["cold_best"]):
            print("  the warm or the cold search scored no trial; not kept", file=sys.stderr, flush=True)
            continue
        row.update(measured, cpus_per_trial=args.cpus, settings=SAME_SETTINGS,
                   date=time.strftime("%Y-%m-%d"), machine=machine("torch"))
        append_json_line(path, row)
        print(f"  earlier {row['earlier_best']:.4f}, warm {row['warm_best']:.4f}, cold "
              f"{row['cold_best']:.4f}; warm reached cold's best at trial {row['reach_trial']}",
              file=sys.stderr, flush=True)


def report(args: argparse.Namespace, space: str) -> None:
    rows = sorted((r for r in read_json_lines(results_path(args.smoke))
                   if (r["space"], r["trials"], r["smoke"]) == (space, args.trials, args.smoke)
                   and r["seed"] < args.seeds), key=lambda r: r["seed"])
    if not rows:
        print(f"\n{space}: no results for {args.trials} trials")
        return
    smoke = " (smoke)" if args.smoke else ""
    print(f"\n### {space}: warm start, {args.trials}-trial bayes searches{smoke}\n")
    print(f"All searches: {', '.join(f'{k}={v}' for k, v in SAME_SETTINGS.items())}; the warm and the "
          f"cold search share seed s + {WARM_SEED_OFFSET} and differ only by the warm start.\n")
    print("| seed | earlier best | warm best | cold best | warm reaches cold's best at trial | warm better |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['seed']} | {row['earlier_best']:.4f} | {row['warm_best']:.4f} | "
              f"{row['cold_best']:.4f} | {row['reach_trial'] or 'never'} | "
              f"{'yes' if row['warm_beats_cold'] else 'no'} |")
    _report_means(rows, space, args)


def _report_means(rows: list[dict[str, Any]], space: str, args: argparse.Namespace) -> None:
    """The means over the seeds, and issue 24's two targets as PASS/FAIL lines."""
    never, target = args.trials + 1, reach_target(args.trials)
    reach = statistics.fmean(row["reach_trial"] or never for row in rows)
    n_within = sum((row["reach_trial"] or never) <= target for row in rows)
    earlier, warm, cold = (statistics.fmean(row[name] for row in rows)
                           for name in ("earlier_best", "warm_best", "cold_best"))
    better = warm > cold if rows[0]["mode"] == "max" else warm < cold
    print(f"| **mean** | {earlier:.4f} | **{warm:.4f}** | **{cold:.4f}** | **{reach:.1f}** | "
          f"{sum(row['warm_beats_cold'] for row in rows)}/{len(rows)} |")
    print(f"\n(\"never\" counts as trial {never} in the mean.) Machine: {rows[0]['machine']}")
    note = " (smoke: not the bar)" if args.smoke else ""
    print(f"{'PASS' if reach <= target else 'FAIL'} {space}: mean trial at which the warm search reaches "
          f"the cold search's best {reach:.1f} <= {target} ({n_within}/{len(rows)} seeds within){note}")
    print(f"{'PASS' if better else 'FAIL'} {space}: mean best, warm {warm:.4f} better than cold "
          f"{cold:.4f}{note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", choices=SPACES, action="append",
                        help="a space (repeatable; default: both, one after the other)")
    parser.add_argument("--seeds", type=int, help=f"seeds 0 .. N-1 (default 5; --smoke: {SMOKE_SEEDS})")
    parser.add_argument("--trials", type=int, help=f"trials a search (default 20; --smoke: {SMOKE_TRIALS})")
    parser.add_argument("--cpus", type=float, default=1.0,
                        help="CPUs (and torch threads) a trial (default 1)")
    parser.add_argument("--smoke", action="store_true",
                        help="tuneforge's --smoke trials (vit-digits), fewer trials and seeds; results in "
                             "their own file")
    parser.add_argument("--report", action="store_true", help="only print the tables, from the file")
    args = parser.parse_args()
    args.seeds = args.seeds or (SMOKE_SEEDS if args.smoke else 5)
    args.trials = args.trials or (SMOKE_TRIALS if args.smoke else 20)
    measure_and_report(args, args.space or SPACES, measure, report)


if __name__ == "__main__":
    main()
