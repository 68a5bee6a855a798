"""How much tuneforge adds to a plain Ray Tune search (issue 2's target: ratio <= 1.15).

Runs, alternately and ``--repeats`` times, (a) ``tuneforge search ridge-diabetes`` with MLflow
logging to a SQLite store and (b) ``benchmarks/plain_tune.py``, the same search as a plain Ray
Tune script: same trainable, trials, seed, concurrency and actor reuse. Each is timed as a whole
process (start-up, Ray start and stop, imports included), which is what a user waits for.
The MLflow store is created once before timing, as a user's store exists after their first search.

    .venv/bin/python benchmarks/overhead.py [--trials 50] [--repeats 5] [--max-concurrent 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import machine, tracking_uri_in

HERE = Path(__file__).resolve().parent
TUNEFORGE = str(Path(sys.executable).parent / "tuneforge")


def _timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _commands(folder: Path, trials: int, seed: int, concurrent: int) -> dict[str, list[str]]:
    common = ["--trials", str(trials), "--seed", str(seed), "--max-concurrent", str(concurrent)]
    return {
        "tuneforge": [TUNEFORGE, "search", "ridge-diabetes", *common,
                      "--tracking-uri", tracking_uri_in(folder),
                      "--storage", str(folder / "tuneforge_results")],
        "plain": [sys.executable, str(HERE / "plain_tune.py"), *common,
                  "--storage", str(folder / "plain_results")],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-concurrent", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        commands = _commands(folder, args.trials, 0, args.max_concurrent)
        print("warm-up (creates the MLflow store, fills the OS file cache)...", flush=True)
        for command in commands.values():
            _timed(command, folder)
        times: dict[str, list[float]] = {"tuneforge": [], "plain": []}
        for repeat in range(args.repeats):
            commands = _commands(folder, args.trials, repeat + 1, args.max_concurrent)
            for name in (("tuneforge", "plain") if repeat % 2 == 0 else ("plain", "tuneforge")):
                times[name].append(_timed(commands[name], folder))
            print(f"repeat {repeat + 1}: tuneforge {times['tuneforge'][-1]:.2f} s, "
                  f"plain {times['plain'][-1]:.2f} s", flush=True)

    a, b = statistics.median(times["tuneforge"]), statistics.median(times["plain"])
    print(f"\n## Overhead of tuneforge over plain Ray Tune ({time.strftime('%Y-%m-%d')})\n")
    print(f"- command: `.venv/bin/python benchmarks/overhead.py --trials {args.trials} "
          f"--repeats {args.repeats} --max-concurrent {args.max_concurrent}`")
    print(f"- machine: {machine()}")
    print(f"- (a) tuneforge search + MLflow (SQLite), s: {', '.join(f'{t:.2f}' for t in times['tuneforge'])}")
    print(f"- (b) plain Ray Tune script, s: {', '.join(f'{t:.2f}' for t in times['plain'])}")
    print(f"- medians: (a) {a:.2f} s, (b) {b:.2f} s; **ratio (a)/(b) = {a / b:.3f}** (target <= 1.15)")


if __name__ == "__main__":
    main()
