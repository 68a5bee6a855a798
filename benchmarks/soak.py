"""Soak: a long random search of ``branin``, 2 trials at a time, through :func:`tuneforge.search`,
and the same search in plain Ray Tune (the benchmark family's function, Tune's seeded random
search, actor reuse, Tune's default loggers; no tuneforge, no MLflow) as the reference.

Each arm runs in a process of its own, one after the other in one invocation. Measured in each:
the driver's resident memory (VmRSS) and the wall time since the search started at the
``--early`` th and at the last ended trial, so that the per-trial overhead (wall / trials) and
the memory growth between the two come from the same search. Then every tuneforge trial is
counted in MLflow (its child run, FINISHED, with the metric). The bars (issue 9): growth from
trial 200 to 2,000 at most 50 MB, per-trial time at 2,000 within 1.2x that at 200. Prints
Markdown.

    .venv/bin/python benchmarks/soak.py [--trials 2000] [--early 200]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import machine, search_in_folder

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


def _tuneforge_arm(trials: int, early: int) -> dict[str, Any]:
    from mlflow import MlflowClient

    folder = Path(tempfile.mkdtemp(prefix="tuneforge-soak-"))
    probe = _Probe({early, trials})
    # 1 CPU a trial, as the plain arm's (and tuneforge's default)
    result = search_in_folder("branin", folder, 1.0, algo="random", trials=trials, seed=0, max_concurrent=2,
                              on_event=probe)
    client = MlflowClient(result.tracking_uri)
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
    return {"samples": probe.samples, "complete": complete, "status": str(result.status),
            "best": result.best_score}


def _plain_arm(trials: int, early: int) -> dict[str, Any]:
    import ray
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    from tuneforge.trainables.benchmark import train_benchmark

    samples: dict[int, tuple[float, float]] = {}
    started = [0.0]

    class Probe(tune.Callback):
        n_ended = 0

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.n_ended += 1
            if self.n_ended in (early, trials_total):
                samples[self.n_ended] = (time.monotonic() - started[0], _rss_mb())

    trials_total = trials
    ray.init(address="local", num_cpus=2, log_to_driver=False)
    tuner = tune.Tuner(
        tune.with_resources(train_benchmark, {"cpu": 1.0, "gpu": 0.0}),
        param_space={"function": "branin", "x1": tune.uniform(-5.0, 10.0), "x2": tune.uniform(0.0, 15.0)},
        tune_config=tune.TuneConfig(metric="value", mode="min", num_samples=trials, reuse_actors=True,
                                    search_alg=BasicVariantGenerator(random_state=0, max_concurrent=2)),
        run_config=tune.RunConfig(storage_path=tempfile.mkdtemp(prefix="plain-soak-"), verbose=0,
                                  callbacks=[Probe()]))
    started[0] = time.monotonic()
    results = tuner.fit()
    return {"samples": samples, "complete": len(results), "status": "", "best": None}


def _run_arm(arm: str, args: argparse.Namespace) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--arm", arm, "--trials", str(args.trials),
                           "--early", str(args.early)], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["samples"] = {int(k): v for k, v in result["samples"].items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--early", type=int, default=200)
    parser.add_argument("--arm", choices=["tuneforge", "plain"], help="run one arm (internal)")
    args = parser.parse_args()
    if args.arm:
        arm = _tuneforge_arm if args.arm == "tuneforge" else _plain_arm
        print(json.dumps(arm(args.trials, args.early)))
        return

    arms = {"plain Ray Tune": _run_arm("plain", args), "tuneforge": _run_arm("tuneforge", args)}
    print(f"Machine: {machine('ray', 'mlflow')}")
    print(f"Budget: {args.trials:,} trials of branin, random search (seed 0), 2 at a time\n")
    print(f"| arm | wall at {args.early:,} / {args.trials:,} | per-trial time at {args.early:,} / "
          f"{args.trials:,} | ratio (bar <= 1.2x) | RSS at {args.early:,} / {args.trials:,} | "
          "growth (bar <= 50 MB) | trials recorded |")
    print("|---|---|---|---|---|---|---|")
    for name, arm in arms.items():
        (early_s, early_mb), (late_s, late_mb) = arm["samples"][args.early], arm["samples"][args.trials]
        early_per, late_per = early_s / args.early, late_s / args.trials
        recorded = f"{arm['complete']:,} in MLflow" if name == "tuneforge" else f"{arm['complete']:,} in Tune"
        print(f"| {name} | {early_s:.1f} s / {late_s:.1f} s | "
              f"{early_per * 1000:.1f} / {late_per * 1000:.1f} ms | {late_per / early_per:.2f}x | "
              f"{early_mb:.0f} / {late_mb:.0f} MB | {late_mb - early_mb:+.0f} MB | {recorded} |")


if __name__ == "__main__":
    main()
