"""Quality of the searchers: regret after 20, 40 and 80 evaluations (issues 4 and 13).

Every algorithm is driven as Tune drives it (``AskTell``), on the bundled benchmark functions
and on real scikit-learn spaces, for several seeds, one trial at a time and with 4 running at
once (the oldest of the 4 reports first). tuneforge's algorithms are built by its registry; the
one reference it does not offer, BoTorch, is optuna-integration's ``BoTorchSampler`` through the
same ``OptunaSearch`` adapter as Optuna's own samplers (shown the running trials). A run goes to
the largest budget and is read at each budget: no algorithm here knows its budget, so the first
40 evaluations of an 80-evaluation run are a 40-evaluation run. Results go to a JSON-lines file,
one line per (problem, algorithm, seed, concurrency), so an interrupted run resumes and a changed
algorithm can be re-measured alone (``--replace``).

Two measures, values minimised (a maximised metric is negated), lower is better:
- **Bayesmark-normalised regret** at budget n = (best value found in n - optimum) /
  (expected best of n random configurations - optimum): 0 is the optimum, 1 is as good as
  random search with the same number of trials. The expected best of n random draws is computed
  exactly from a seeded sample of random configurations (10,000 for a function, 200 for a
  scikit-learn space) by order statistics.
- **log10 simple regret** = log10(best value found - optimum), on the functions (known optimum):
  the digits a search got right, which a normalised mean near 0 hides.
The optimum of a test function is its known minimum; for a scikit-learn space it is the best
value any run or the random sample ever found.

``--baseline REV`` measures GPSearcher as it was at git revision REV too, as ``bayes@REV``, in
the same invocation (its tree is exported with ``git archive`` and put first on the workers'
path), so a change to the searcher is compared side by side with what it changed.

    .venv/bin/python benchmarks/searchers.py                    # everything
    .venv/bin/python benchmarks/searchers.py --report           # the tables, from the results file
    .venv/bin/python benchmarks/searchers.py --algos bayes --replace --problems branin,hartmann6
    .venv/bin/python benchmarks/searchers.py --algos bayes --baseline 8326726 --problems svc-wine
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import RESULTS, append_json_line, read_json_lines, write_json_lines

HERE = Path(__file__).resolve().parent
DEFAULT_RESULTS = RESULTS / "searchers-convergence.jsonl"
results = DEFAULT_RESULTS  # set by --results
FUNCTION_PROBLEMS = ["branin", "hartmann3", "hartmann6", "ackley5", "rosenbrock4", "levy6-mixed"]
SKLEARN_PROBLEMS = ["svc-wine", "knn-diabetes"]
ALGOS = ["bayes", "optuna-gp", "botorch", "optuna-tpe", "random"]
GP_REFERENCES = ("optuna-gp", "botorch")
BUDGETS = (20, 40, 80)
BAR_BUDGET = 40
_N_RANDOM_FUNCTION = 10_000
_N_RANDOM_SKLEARN = 200
_REGRET_FLOOR = 1e-12  # log10 of a regret of exactly 0


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


def _botorch(space, budget):
    """optuna-integration's BoTorchSampler (its default candidates: a SingleTaskGP and log EI)."""
    from optuna_integration import BoTorchSampler

    from tuneforge.platform.searchers import optuna_search

    return optuna_search(space, budget, BoTorchSampler(seed=budget.seed, consider_running_trials=True))


def run_one(task: tuple[str, str, int, int, int]) -> dict:
    """One search: its best-so-far curve and the time spent in the searcher."""
    import tuneforge
    from tuneforge.platform.searchers.ask_tell import AskTell

    problem, algo, seed, concurrency, budget = task
    evaluate, space = objective(problem)
    if "@" in algo:  # bayes@REV: the worker's path starts with REV's tree
        assert str(_tree_of(algo)) in tuneforge.__file__, f"{algo} imported {tuneforge.__file__}"
    own_setup = {"setup": _botorch} if algo == "botorch" else {}  # (older trees' AskTell has no setup)
    search = AskTell(algo.split("@")[0], space, seed=seed, trials=budget, **own_setup)
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


def expected_best(sample: np.ndarray, n: int) -> float:
    """The expected minimum of n draws (with replacement) from ``sample``: with the sample
    sorted, the i-th smallest (0-based) is the minimum with probability
    ((N - i) / N)^n - ((N - i - 1) / N)^n."""
    ordered = np.sort(sample)
    N = len(ordered)
    above = (N - np.arange(N)) / N
    return float(np.sum(ordered * (above**n - np.append(above[1:], 0.0) ** n)))


def random_reference(problem: str) -> dict:
    """The expected best of n random configurations at each budget, and the best one seen."""
    evaluate, space = objective(problem)
    rng = np.random.default_rng(12345)
    n = _N_RANDOM_SKLEARN if space.trainable == "sklearn" else _N_RANDOM_FUNCTION
    values = np.array([evaluate(space.decode(rng.random(space.n_dims))) for _ in range(n)])
    return {"problem": problem, "reference": True, "best": float(values.min()),
            "random_best": {str(b): expected_best(values, b) for b in BUDGETS}}


def _tree_of(algo: str) -> Path:
    return Path(tempfile.gettempdir()) / f"tuneforge-{algo.split('@')[1]}"


def _export(revision: str) -> Path:
    """REV's tuneforge package, exported once into a temporary folder."""
    tree = _tree_of(f"bayes@{revision}")
    if not (tree / "tuneforge").exists():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(HERE.parent), "archive", revision, "tuneforge"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def _prepend_path(tree: str | None) -> None:
    if tree:
        sys.path.insert(0, tree)


def measure(problems: list[str], algos: list[str], seeds: range, concurrencies: list[int], budget: int,
            replace: bool, workers: int) -> None:
    rows = read_json_lines(results)
    if replace:
        rows = [r for r in rows
                if r.get("reference") or not (r["algo"] in algos and r["problem"] in problems)]
        write_json_lines(results, rows)
    done = {(r["problem"], r["algo"], r["seed"], r["concurrency"]) for r in rows if not r.get("reference")}
    referenced = {r["problem"] for r in rows if r.get("reference")}
    for problem in problems:
        if problem not in referenced:
            append_json_line(results, random_reference(problem))
    started = time.time()
    # Workers share the CPUs: one BLAS thread each (read when a worker loads numpy and scipy).
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    trees = [*sorted({a for a in algos if "@" in a}), None]
    for tree_algo in trees:  # one pool per source tree: a worker imports tuneforge once
        own = [a for a in algos if a == tree_algo] if tree_algo else [a for a in algos if "@" not in a]
        # The slowest algorithms first, so that no long run is left alone at the end.
        own.sort(key=lambda a: ["botorch", "optuna-gp"].index(a) if a in ("botorch", "optuna-gp") else 2)
        tasks = [(p, a, s, c, budget) for a in own for p in problems for s in seeds
                 for c in concurrencies if (p, a, s, c) not in done]
        if not tasks:
            continue
        tree = str(_export(tree_algo.split("@")[1])) if tree_algo else None
        with multiprocessing.get_context("spawn").Pool(workers, maxtasksperchild=20,
                                                       initializer=_prepend_path, initargs=(tree,)) as pool:
            for index, row in enumerate(pool.imap_unordered(run_one, tasks), 1):
                append_json_line(results, row)
                print(f"[{index}/{len(tasks)}] {row['problem']} {row['algo']} seed {row['seed']} "
                      f"x{row['concurrency']}: best {row['best_so_far'][-1]:.6g} "
                      f"({time.time() - started:.0f} s)", flush=True)


def _regrets(rows: list[dict]) -> dict[tuple[str, int, str, int], list[tuple[float, float]]]:
    """(problem, concurrency, algo, budget) -> [(Bayesmark-normalised regret, simple regret)]
    over seeds."""
    from tuneforge.search_spaces import load_space
    from tuneforge.trainables.benchmark import FUNCTIONS

    references = {r["problem"]: r for r in rows if r.get("reference")}
    runs = [r for r in rows if not r.get("reference")]
    regrets: dict[tuple[str, int, str, int], list[tuple[float, float]]] = defaultdict(list)
    for problem, reference in references.items():
        space = load_space(problem)
        own = [r for r in runs if r["problem"] == problem]
        if space.trainable == "benchmark":
            optimum = FUNCTIONS[space.config["function"]].minimum
        else:
            optimum = min([reference["best"], *(r["best_so_far"][-1] for r in own)])
        for run in own:
            for budget in BUDGETS:
                if budget > len(run["best_so_far"]):
                    continue
                simple = max(run["best_so_far"][budget - 1] - optimum, 0.0)
                scale = reference["random_best"][str(budget)] - optimum
                regrets[(problem, run["concurrency"], run["algo"], budget)].append((simple / scale, simple))
    return regrets


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _table(regrets: dict, problems: list[str], algos: list[str], concurrency: int, budget: int) -> dict:
    """Print the Bayesmark table of one concurrency and budget; return algo -> per-problem means."""
    print(f"\n#### Bayesmark-normalised regret at {budget} evaluations, {concurrency} at a time "
          "(mean ± standard error over seeds; 0 = optimum, 1 = random search's best at that budget)\n")
    print("| problem | " + " | ".join(algos) + " | bayes / better GP reference |")
    print("|---" * (len(algos) + 2) + "|")
    means: dict[str, dict[str, float]] = defaultdict(dict)
    for problem in problems:
        cells = []
        for algo in algos:
            values = [b for b, _ in regrets.get((problem, concurrency, algo, budget), [])]
            means[algo][problem] = _mean(values)
            sem = float(np.std(values) / np.sqrt(len(values))) if len(values) > 1 else 0.0
            cells.append(f"{means[algo][problem]:.4f} ± {sem:.4f}" if values else "—")
        better = min(means[a].get(problem, float("nan")) for a in GP_REFERENCES if a in algos) \
            if any(a in algos for a in GP_REFERENCES) else float("nan")
        ratio = means["bayes"][problem] / better if better > 0 else float("nan")
        print(f"| {problem} | " + " | ".join(cells) + f" | {ratio:.2f} |")
    overall = {a: _mean([means[a][p] for p in problems]) for a in algos}
    print("| **mean** | " + " | ".join(f"**{overall[a]:.4f}**" for a in algos) + " | |")
    return means


def _log10_table(regrets: dict, problems: list[str], algos: list[str], concurrency: int) -> None:
    print(f"\n#### log10 simple regret, {concurrency} at a time (mean over seeds of log10(best - optimum),"
          f" a regret of 0 counted as 1e-12; at " + " / ".join(map(str, BUDGETS)) + " evaluations)\n")
    print("| problem | " + " | ".join(algos) + " |")
    print("|---" * (len(algos) + 1) + "|")
    for problem in problems:
        cells = []
        for algo in algos:
            per_budget = []
            for budget in BUDGETS:
                simple = [s for _, s in regrets.get((problem, concurrency, algo, budget), [])]
                per_budget.append(f"{_mean([np.log10(max(s, _REGRET_FLOOR)) for s in simple]):.1f}"
                                  if simple else "—")
            cells.append(" / ".join(per_budget))
        print(f"| {problem} | " + " | ".join(cells) + " |")


def _verdict(means: dict, problems: list[str], concurrency: int) -> None:
    """Issue 13's bar at one concurrency, on the functions."""
    references = {a: _mean([means[a][p] for p in problems]) for a in GP_REFERENCES}
    better_name = min(references, key=references.get)
    ours = _mean([means["bayes"][p] for p in problems])
    lagging = []
    for problem in problems:
        better = min(means[a][problem] for a in GP_REFERENCES)
        if means["bayes"][problem] > max(2 * better, better + 0.02):
            lagging.append(f"{problem} ({means['bayes'][problem]:.4f} vs {better:.4f})")
    print(f"\nBar at {BAR_BUDGET} evaluations, {concurrency} at a time: bayes mean {ours:.4f} = "
          f"**{ours / references[better_name]:.2f}x** the better GP reference ({better_name}, "
          f"{references[better_name]:.4f}); functions beyond max(2x, +0.02): "
          + (", ".join(lagging) if lagging else "none"))


def report() -> None:
    rows = read_json_lines(results)
    regrets = _regrets(rows)
    present = {key[2] for key in regrets}
    algos = [a for a in ALGOS if a in present] + sorted(a for a in present if a not in ALGOS)
    for group in (FUNCTION_PROBLEMS, SKLEARN_PROBLEMS):
        problems = [p for p in group if any(key[0] == p for key in regrets)]
        if not problems:
            continue
        for concurrency in sorted({key[1] for key in regrets}):
            for budget in BUDGETS:
                means = _table(regrets, problems, algos, concurrency, budget)
                if group is FUNCTION_PROBLEMS and budget == BAR_BUDGET and set(GP_REFERENCES) <= set(algos):
                    _verdict(means, problems, concurrency)
            if group is FUNCTION_PROBLEMS:
                _log10_table(regrets, problems, algos, concurrency)
    speed = defaultdict(list)
    for r in rows:
        if not r.get("reference"):
            speed[r["algo"]].append(r["seconds_per_suggestion"])
    print("\nSeconds in the searcher per suggestion (median over runs): "
          + ", ".join(f"{a} {statistics.median(speed[a]):.3f}" for a in algos if speed[a]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default=",".join(FUNCTION_PROBLEMS + SKLEARN_PROBLEMS))
    parser.add_argument("--algos", default=",".join(ALGOS))
    parser.add_argument("--baseline", metavar="REV", help="also measure GPSearcher at git revision REV")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds first-seed ... first-seed + seeds - 1 (others: a held-out check)")
    parser.add_argument("--budget", type=int, default=max(BUDGETS))
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--replace", action="store_true", help="measure these algorithms again")
    parser.add_argument("--report", action="store_true", help="only print the tables")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="the JSON-lines results file")
    args = parser.parse_args()
    global results
    results = args.results
    algos = args.algos.split(",") + ([f"bayes@{args.baseline}"] if args.baseline else [])
    if not args.report:
        measure(args.problems.split(","), algos, range(args.first_seed, args.first_seed + args.seeds),
                [int(c) for c in args.concurrency.split(",")], args.budget, args.replace, args.workers)
    report()


if __name__ == "__main__":
    sys.exit(main())
