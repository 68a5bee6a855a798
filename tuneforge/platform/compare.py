"""``tuneforge compare``: several algorithms on one space, same budget, same seeds, one report.

Every (algorithm, seed) is a real search through the runner, recorded as its own parent run
in one MLflow experiment and tagged with the comparison's id; one Ray session serves them all.
The report is the dashboards' report of those runs, plus the comparison's picture (PNG) and
table (CSV and Markdown), saved locally and logged to a ``comparison`` run of the experiment.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tuneforge.errors import ConfigError
from tuneforge.platform.cluster import ray_cluster, resolve_address
from tuneforge.platform.planning import SearchOptions, plan_search
from tuneforge.platform.runner import SearchResult, search
from tuneforge.schema import Roles, Tags
from tuneforge.search_spaces import SearchSpace, load_space

__all__ = ["ComparisonResult", "compare"]


@dataclass(frozen=True)
class ComparisonResult:
    """The searches of a comparison, and where its report is."""

    comparison_id: str
    searches: tuple[SearchResult, ...]
    report_dir: Path
    run_id: str
    """The MLflow run holding the comparison's report."""


def _plans(space: SearchSpace, algos: Sequence[str], seeds: int, options: SearchOptions) -> None:
    """Check every algorithm's search before running any (nothing is created on bad input)."""
    if seeds < 1:
        raise ConfigError(f"--seeds: expected at least 1, got {seeds}")
    if not algos:
        raise ConfigError("--algos: expected at least one algorithm")
    for algo in algos:
        plan_search(space, dataclasses.replace(options, algo=algo, seed=0))


def compare(space: SearchSpace | str | Path, *, algos: Sequence[str], budget: int, seeds: int,
            options: SearchOptions | None = None, out_dir: str | Path | None = None,
            on_search: Callable[[SearchResult, int, int], None] | None = None) -> ComparisonResult:
    """Run ``algos`` x ``seeds`` searches of ``budget`` trials each and report on them.

    ``options`` gives the rest of each search's settings (tracking store, cluster,
    concurrency...); its experiment defaults to ``<space>-compare``. ``on_search`` receives
    each finished search with its index and the total. Seeds are 0 .. seeds - 1.
    """
    space = space if isinstance(space, SearchSpace) else load_space(space)
    comparison_id = uuid.uuid4().hex[:8]
    base = dataclasses.replace(options or SearchOptions(), trials=budget,
                               experiment=(options and options.experiment) or f"{space.name}-compare",
                               tags=((Tags.COMPARISON, comparison_id),))
    _plans(space, algos, seeds, base)
    runs = [(algo, seed) for algo in algos for seed in range(seeds)]
    results = []
    with ray_cluster(resolve_address(base.address), job_name=f"tuneforge compare {space.name}"):
        for index, (algo, seed) in enumerate(runs, 1):
            result = search(space, dataclasses.replace(base, algo=algo, seed=seed))
            results.append(result)
            if on_search:
                on_search(result, index, len(runs))
    report_dir, run_id = _report(results, comparison_id, out_dir)
    return ComparisonResult(comparison_id, tuple(results), report_dir, run_id)


def _report(results: Sequence[SearchResult], comparison_id: str,
            out_dir: str | Path | None) -> tuple[Path, str]:
    """The dashboards' comparison report of ``results``, logged to a new ``comparison`` run."""
    from mlflow import MlflowClient

    from tuneforge.dashboards import build_comparison_report

    first = results[0]
    folder = build_comparison_report(
        first.experiment, [r.parent_run_id for r in results], tracking_uri=first.tracking_uri,
        out_dir=out_dir or Path.cwd() / "reports" / f"{first.experiment}-{comparison_id}")
    client = MlflowClient(first.tracking_uri)
    run = client.create_run(first.experiment_id, run_name=f"comparison-{time.strftime('%Y%m%d-%H%M%S')}",
                            tags={Tags.ROLE: Roles.COMPARISON, Tags.COMPARISON: comparison_id})
    client.log_artifacts(run.info.run_id, str(folder))
    client.set_terminated(run.info.run_id)
    return folder, run.info.run_id
