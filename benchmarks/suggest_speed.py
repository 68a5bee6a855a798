"""Time per suggestion of the GP searchers, ours against Optuna's GPSampler, in the same run.

Both search Hartmann-6 (6 continuous dimensions) through tuneforge's registry, driven as Tune
drives them (``AskTell``), one trial at a time. After 100 observations, the next suggestions are
timed one by one; the median is reported (issue 4: ours should be no slower).

    .venv/bin/python benchmarks/suggest_speed.py [--observations 100] [--timed 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from _common import machine

from tuneforge.platform.searchers.ask_tell import AskTell
from tuneforge.search_spaces import load_space
from tuneforge.trainables.benchmark import FUNCTIONS


def timings(algo: str, observations: int, timed: int, seed: int) -> list[float]:
    space, function = load_space("hartmann6"), FUNCTIONS["hartmann6"]
    search = AskTell(algo, space, seed=seed, trials=observations + timed)
    seconds = []
    for index in range(observations + timed):
        start = time.perf_counter()
        trial_id, config = search.ask()
        if index >= observations:
            seconds.append(time.perf_counter() - start)
        x = np.array([[config[name] for name in space.param_names]])
        search.tell(trial_id, float(function.evaluate(x)[0]))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observations", type=int, default=100)
    parser.add_argument("--timed", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    medians = {}
    for algo in ("bayes", "optuna-gp"):
        seconds = timings(algo, args.observations, args.timed, args.seed)
        medians[algo] = statistics.median(seconds)
        print(f"{algo}: median {medians[algo]:.3f} s per suggestion after {args.observations} observations "
              f"(min {min(seconds):.3f}, max {max(seconds):.3f})", flush=True)
    print(f"\n- command: `.venv/bin/python benchmarks/suggest_speed.py --observations {args.observations} "
          f"--timed {args.timed} --seed {args.seed}`")
    print(f"- machine: {machine()}")
    print(f"- ours (bayes) {medians['bayes']:.3f} s, Optuna GPSampler {medians['optuna-gp']:.3f} s; "
          f"**ratio ours/Optuna = {medians['bayes'] / medians['optuna-gp']:.2f}** (target <= 1)")


if __name__ == "__main__":
    main()
