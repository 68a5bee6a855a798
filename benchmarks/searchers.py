"""Quality of the searchers: normalised regret after a budget of evaluations (issue 4's bar).

Every algorithm is built by tuneforge's registry and driven as Tune drives it (``AskTell``), on
the bundled benchmark functions and on real scikit-learn spaces, for several seeds, one trial at
a time and with 4 running at once (the oldest of the 4 reports first). Results go to a JSON-lines
file, one line per (problem, algorithm, seed, concurrency), so an interrupted run resumes and a
changed algorithm can be re-measured alone (``--replace``).

Normalised regret = (best value found - optimum) / (median value of a random point - optimum):
0 is the optimum, 1 is what an average random configuration scores. The optimum of a test
function is known; for a scikit-learn space it is the best value any run or the random sample
ever found. Lower is better; values are minimised (a maximised metric is negated).

    .venv/bin/python benchmarks/searchers.py                     # everything (about 2 hours on 2 CPUs)
    .venv/bin/python benchmarks/searchers.py --report            # the tables, from the results file
    .venv/bin/python benchmarks/searchers.py --algos bayes --replace --problems branin,hartmann6
    .venv/bin/python benchmarks/searchers.py --first-seed 10 --results held-out.jsonl ...   # fresh seeds
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_RESULTS = HERE / "results" / "searchers.jsonl"
results = DEFAULT_RESULTS  # set by --results
FUNCTION_PROBLEMS = ["branin", "hartmann3", "hartmann6", "ackley5", "rosenbrock4", "levy6-mixed"]
SKLEARN_PROBLEMS = ["svc-wine", "knn-diabetes"]
ALGOS = ["bayes", "optuna-gp", "optuna-tpe", "random"]
_N_RANDOM_FUNCTION = 10_000
_N_RANDOM_SKLEARN = 200


def objective(problem: str) -> tuple[Callable[[dict], float], object]:
    """A function of a config's searched values returning the value to minimise, and the space."""
    from tuneforge.search_spaces import load_space
    from tuneforge.trainables import get_trainable

    space = load_space(problem)
    config = get_trainable(space.trainable).prepare(space)
    sign = -1.0 if space.mode == "max" else 1.0
    if space.trainable == "benchmark":
        from tuneforge.trainables.benchmark import FUNCTIONS

        function = FUNCTIONS[config["function"]]

        def evaluate(values: dict) -> float:
            x = np.array([[float(values[f"x{i + 1}"]) for i in range(function.dims)]])
            return float(function.evaluate(x)[0])
    else:
        from tuneforge.trainables.sklearn.trainable import cross_validated

        def evaluate(values: dict) -> float:
            return sign * cross_validated({**config, **values})[0][space.metric]
    return evaluate, space


def run_one(task: tuple[str, str, int, int, int]) -> dict:
    """One search: its best-so-far curve and the time spent in the searcher."""
    from tuneforge.platform.searchers.ask_tell import AskTell

    problem, algo, seed, concurrency, budget = task
    evaluate, space = objective(problem)
    search = AskTell(algo, space, seed=seed, trials=budget)
    pending, values, asked = [], [], 0
    while len(values) < budget:
        while len(pending) < concurrency and asked < budget:
            pending.append(search.ask())
            asked += 1
        trial_id, config = pending.pop(0)
        value = evaluate(search.values(config))
        # The searchers see the space's own metric: maximised metrics keep their sign.
        search.tell(trial_id, -value if space.mode == "max" else value)
        values.append(value)
    return {"problem": problem, "algo": algo, "seed": seed, "concurrency": concurrency, "budget": budget,
            "best_so_far": np.minimum.accumulate(values).tolist(),
            "seconds_per_suggestion": search.seconds_asking / budget}


def random_reference(problem: str) -> dict:
    """Median value of a random configuration, and the best one seen, for normalisation."""
    evaluate, space = objective(problem)
    rng = np.random.default_rng(12345)
    n = _N_RANDOM_SKLEARN if space.trainable == "sklearn" else _N_RANDOM_FUNCTION
    values = [evaluate(space.decode(rng.random(space.n_dims))) for _ in range(n)]
    return {"problem": problem, "reference": True, "median": float(np.median(values)),
            "best": float(min(values))}


def _load() -> list[dict]:
    if not results.exists():
        return []
    return [json.loads(line) for line in results.read_text().splitlines() if line.strip()]


def _append(row: dict) -> None:
    results.parent.mkdir(parents=True, exist_ok=True)
    with results.open("a") as handle:
        handle.write(json.dumps(row) + "\n")


def measure(problems: list[str], algos: list[str], seeds: range, concurrencies: list[int], budget: int,
            replace: bool, workers: int) -> None:
    rows = _load()
    if replace:
        rows = [r for r in rows
                if r.get("reference") or not (r["algo"] in algos and r["problem"] in problems)]
        results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = {(r["problem"], r["algo"], r["seed"], r["concurrency"]) for r in rows if not r.get("reference")}
    referenced = {r["problem"] for r in rows if r.get("reference")}
    for problem in problems:
        if problem not in referenced:
            _append(random_reference(problem))
    tasks = [(p, a, s, c, budget) for p in problems for a in algos for s in seeds
             for c in concurrencies if (p, a, s, c) not in done]
    started = time.time()
    # Workers share the CPUs: one BLAS thread each (read when a worker loads numpy and scipy).
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    with multiprocessing.get_context("spawn").Pool(workers, maxtasksperchild=20) as pool:
        for index, row in enumerate(pool.imap_unordered(run_one, tasks), 1):
            _append(row)
            print(f"[{index}/{len(tasks)}] {row['problem']} {row['algo']} seed {row['seed']} "
                  f"x{row['concurrency']}: best {row['best_so_far'][-1]:.5g} "
                  f"({time.time() - started:.0f} s)", flush=True)


def _regrets(rows: list[dict]) -> dict[tuple[str, int, str], list[float]]:
    from tuneforge.search_spaces import load_space
    from tuneforge.trainables.benchmark import FUNCTIONS

    references = {r["problem"]: r for r in rows if r.get("reference")}
    runs = [r for r in rows if not r.get("reference")]
    regrets: dict[tuple[str, int, str], list[float]] = defaultdict(list)
    for problem, reference in references.items():
        space = load_space(problem)
        own = [r for r in runs if r["problem"] == problem]
        if space.trainable == "benchmark":
            optimum = FUNCTIONS[space.config["function"]].minimum
        else:
            optimum = min([reference["best"], *(r["best_so_far"][-1] for r in own)])
        scale = reference["median"] - optimum
        for run in own:
            regret = (run["best_so_far"][-1] - optimum) / scale
            regrets[(problem, run["concurrency"], run["algo"])].append(regret)
    return regrets


def report() -> None:
    rows = _load()
    regrets = _regrets(rows)
    problems = sorted({key[0] for key in regrets}, key=lambda p: (p in SKLEARN_PROBLEMS, p))
    for concurrency in sorted({key[1] for key in regrets}):
        print(f"\n### Normalised regret after the budget, {concurrency} trial(s) at a time "
              f"(mean over seeds; lower is better)\n")
        print("| problem | " + " | ".join(ALGOS) + " | bayes / optuna-tpe | bayes / optuna-gp |")
        print("|---" * (len(ALGOS) + 3) + "|")
        means: dict[str, list[float]] = defaultdict(list)
        for problem in problems:
            cells = []
            for algo in ALGOS:
                values = regrets.get((problem, concurrency, algo), [])
                mean = float(np.mean(values)) if values else float("nan")
                means[algo].append(mean)
                sem = float(np.std(values) / np.sqrt(len(values))) if len(values) > 1 else 0.0
                cells.append(f"{mean:.4f} ± {sem:.4f} (n={len(values)})" if values else "—")
            ours = means["bayes"][-1]
            ratios = [ours / means[other][-1] if means[other][-1] > 0 else float("nan")
                      for other in ("optuna-tpe", "optuna-gp")]
            print(f"| {problem} | " + " | ".join(cells) + " | "
                  + " | ".join(f"{r:.2f}" for r in ratios) + " |")
        overall = {algo: float(np.mean(v)) for algo, v in means.items()}
        versus_tpe = overall["bayes"] / overall["optuna-tpe"]
        versus_gp = overall["bayes"] / overall["optuna-gp"]
        print("| **mean** | " + " | ".join(f"**{overall[a]:.4f}**" for a in ALGOS)
              + f" | **{versus_tpe:.2f}** | **{versus_gp:.2f}** |")
    speed = defaultdict(list)
    for r in rows:
        if not r.get("reference"):
            speed[r["algo"]].append(r["seconds_per_suggestion"])
    print("\nSeconds in the searcher per suggestion (median over runs): "
          + ", ".join(f"{a} {statistics.median(speed[a]):.3f}" for a in ALGOS if speed[a]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default=",".join(FUNCTION_PROBLEMS + SKLEARN_PROBLEMS))
    parser.add_argument("--algos", default=",".join(ALGOS))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds first-seed ... first-seed + seeds - 1 (others: a held-out check)")
    parser.add_argument("--budget", type=int, default=50)
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--replace", action="store_true", help="measure these algorithms again")
    parser.add_argument("--report", action="store_true", help="only print the tables")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="the JSON-lines results file")
    args = parser.parse_args()
    global results
    results = args.results
    if not args.report:
        measure(args.problems.split(","), args.algos.split(","),
                range(args.first_seed, args.first_seed + args.seeds),
                [int(c) for c in args.concurrency.split(",")], args.budget, args.replace, args.workers)
    report()


if __name__ == "__main__":
    sys.exit(main())
