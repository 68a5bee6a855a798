"""Soak: a long random search of ``branin``, 2 trials at a time, through :func:`tuneforge.search`.

Measured in one run, side by side: the driver's resident memory (VmRSS) and the wall time since
the search started at the ``--early`` th and at the last ended trial, so that the per-trial
overhead (wall / trials) and the memory growth between the two come from the same search. Then
every trial is counted in MLflow (its child run, FINISHED, with the metric). The bars (issue 9):
growth from trial 200 to 2,000 at most 50 MB, per-trial time at 2,000 within 1.2x that at 200.
Prints Markdown.

    .venv/bin/python benchmarks/soak.py [--trials 2000] [--early 200]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from tuneforge.platform.events import SearchStarted, TrialEnded


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class _Probe:
    """Samples the driver at chosen counts of ended trials."""

    def __init__(self, at: set[int]) -> None:
        self.at = at
        self.started: float | None = None
        self.samples: dict[int, tuple[float, float]] = {}

    def __call__(self, event: Any) -> None:
        if isinstance(event, SearchStarted):
            self.started = time.monotonic()
        elif isinstance(event, TrialEnded) and event.n_ended in self.at:
            self.samples[event.n_ended] = (time.monotonic() - self.started, _rss_mb())
            print(f"  {event.n_ended} trials: {self.samples[event.n_ended][0]:.0f} s, "
                  f"{self.samples[event.n_ended][1]:.0f} MB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--early", type=int, default=200)
    args = parser.parse_args()

    from mlflow import MlflowClient

    import tuneforge

    folder = Path(tempfile.mkdtemp(prefix="tuneforge-soak-"))
    store = f"sqlite:///{folder / 'mlflow.db'}"
    probe = _Probe({args.early, args.trials})
    started = time.monotonic()
    result = tuneforge.search("branin", algo="random", trials=args.trials, seed=0, max_concurrent=2,
                              tracking_uri=store, storage=str(folder / "ray_results"), on_event=probe)
    total_s = time.monotonic() - started
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("branin").experiment_id
    runs, token = [], None
    while True:
        page = client.search_runs([experiment], "tags.`tuneforge.role` = 'trial'", max_results=1000,
                                  page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    complete = sum(r.info.status == "FINISHED" and "value" in r.data.metrics for r in runs)

    (early_s, early_mb), (late_s, late_mb) = probe.samples[args.early], probe.samples[args.trials]
    early_per, late_per = early_s / args.early, late_s / args.trials
    print(f"\nMachine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"ray {__import__('ray').__version__}, mlflow {__import__('mlflow').__version__}")
    print(f"Search: {result.status}, {len(result.trials)} trials, best value {result.best_score:.6f}; "
          f"{total_s:.0f} s with start-up and the parent run's close; store {store}\n")
    print("| | at trial " + f"{args.early:,} | at trial {args.trials:,} | ratio or growth | bar |")
    print("|---|---|---|---|---|")
    print(f"| wall since the search started | {early_s:.1f} s | {late_s:.1f} s | | |")
    print(f"| per-trial time (wall / trials) | {early_per * 1000:.1f} ms | {late_per * 1000:.1f} ms | "
          f"{late_per / early_per:.2f}x | <= 1.2x |")
    print(f"| driver RSS | {early_mb:.0f} MB | {late_mb:.0f} MB | {late_mb - early_mb:+.0f} MB | <= 50 MB |")
    print(f"| trials in MLflow (FINISHED, with the metric) | | {complete:,} of {args.trials:,} | | all |")


if __name__ == "__main__":
    main()
