"""``tuneforge darts retrain``: a DARTS search's derived genotype trained from scratch beside random
genotypes of the same space and budget (the paper's comparison, section 3.3), as one search.

The source is a ``darts`` trial's MLflow run (its ``genotype.json``), or a search's parent run,
whose best trial is taken. The retrain is a grid search of the space
:func:`~tuneforge.trainables.darts.retrain.retrain_space` builds (``darts-net`` trials of
``derived`` and ``random-1`` ... ``random-N``, all with the same seed, epochs, data and width),
run as Tune trials (each a child run of a new parent run, its model logged). The comparison
(every genotype's test accuracy and parameter count; the random ones' mean and standard
deviation) is logged on that parent run.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge._checks import check_int
from tuneforge.errors import ConfigError
from tuneforge.platform.planning import SearchOptions
from tuneforge.platform.runner import SearchResult, search
from tuneforge.platform.tracking import resolve_tracking_uri
from tuneforge.schema import Tags

__all__ = ["RetrainResult", "retrain"]

logger = logging.getLogger(__name__)

COMPARISON_CSV = "comparison.csv"
COMPARISON_MD = "comparison.md"
SOURCE_TAG = "tuneforge.darts.source_run_id"


@dataclass(frozen=True)
class RetrainResult:
    """The retrain search and its comparison: one row per genotype (derived first)."""

    search: SearchResult
    rows: tuple[dict[str, Any], ...]
    summary: dict[str, float]
    """``derived_test_accuracy``, ``random_test_accuracy_mean`` and ``_std``, ``derived_n_params``,
    ``random_n_params_mean`` (those that could be measured)."""

    @property
    def markdown(self) -> str:
        return _markdown(self.rows, self.summary)


@dataclass(frozen=True)
class _Source:
    run_id: str
    experiment: str
    genotype: dict[str, Any]
    params: dict[str, str]


def retrain(run_id: str, *, n_random: int = 5, epochs: int = 10, channels: int = 16, layers: int = 8,
            seed: int = 0, train_images: int | None = None, options: SearchOptions | None = None,
            on_event: Callable[[Any], None] | None = None) -> RetrainResult:
    """Train the genotype of ``run_id`` (a ``darts`` trial's run, or a search's parent run for its
    best trial) and ``n_random`` random genotypes from scratch, ``epochs`` epochs each at
    ``channels`` x ``layers``, on the supernet trial's dataset (its first ``train_images`` training
    images; default: as many as the supernet trial had); returns the search and the
    comparison, which is also on the search's parent run. ``options`` are the search's (its
    experiment defaults to the source's with ``-retrain``). ConfigError, nothing created, for a
    run that is not a DARTS search's."""
    from tuneforge.trainables.darts.retrain import retrain_space

    options = options or SearchOptions()
    check_int("--random", n_random, minimum=1)
    tracking_uri = resolve_tracking_uri(options.tracking_uri)
    source = _find_source(run_id, tracking_uri)
    space = retrain_space(source.genotype, source.params, source_run_id=source.run_id, n_random=n_random,
                          epochs=epochs, channels=channels, layers=layers, seed=seed,
                          train_images=train_images)
    # Each genotype is trained whole, once: no starting point, no early stopping.
    options = dataclasses.replace(options, algo="grid", trials=1, tracking_uri=tracking_uri, seed=seed,
                                  start_from="none", scheduler="none",
                                  experiment=options.experiment or f"{source.experiment}-retrain",
                                  tags=(*options.tags, (SOURCE_TAG, source.run_id)))
    result = search(space, options, on_event=on_event)
    rows, summary = _comparison(result)
    _log_comparison(result, rows, summary)
    return RetrainResult(search=result, rows=tuple(rows), summary=summary)


def _find_source(run_id: str, tracking_uri: str) -> _Source:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from tuneforge.trainables.darts.trainable import GENOTYPE_FILE

    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri[len("sqlite:///"):]).exists():
        raise ConfigError(f"run {run_id}: no such MLflow run in {tracking_uri} (the store does not exist)")
    client = MlflowClient(tracking_uri)
    try:
        run = client.get_run(run_id)
        if Tags.BEST_RUN_ID in run.data.tags:  # a search's parent run: its best trial
            best = run.data.tags[Tags.BEST_RUN_ID]
            if not best:
                raise ConfigError(f"run {run_id}: its search has no best trial to retrain")
            run = client.get_run(best)
    except MlflowException:
        raise ConfigError(f"run {run_id}: no such MLflow run in {tracking_uri}") from None
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(run.info.run_id, GENOTYPE_FILE, folder)
            genotype = json.loads(Path(path).read_text())
        except (MlflowException, OSError, ValueError):
            raise ConfigError(f"run {run.info.run_id}: it holds no {GENOTYPE_FILE}; give a darts supernet "
                              "trial's run or its search's parent run") from None
    if "dataset" not in run.data.params:
        raise ConfigError(f"run {run.info.run_id}: it has no dataset param; is it a darts trial's run?")
    experiment = client.get_experiment(run.info.experiment_id).name
    return _Source(run.info.run_id, experiment, genotype, dict(run.data.params))


def _comparison(result: SearchResult) -> tuple[list[dict[str, Any]], dict[str, float]]:
    from tuneforge.trainables.darts.retrain import DERIVED

    rows = [{"genotype": t.params.get("genotype"), "test_accuracy": t.metrics.get("test_accuracy"),
             "val_accuracy": t.metrics.get("val_accuracy"), "n_params": t.metrics.get("n_params"),
             "status": t.status.value, "run_id": t.run_id} for t in result.trials]
    rows.sort(key=lambda row: (row["genotype"] != DERIVED, str(row["genotype"])))
    derived = [r for r in rows if r["genotype"] == DERIVED and r["test_accuracy"] is not None]
    randoms = [r for r in rows if r["genotype"] != DERIVED and r["test_accuracy"] is not None]
    summary: dict[str, float] = {}
    if derived:
        summary.update(derived_test_accuracy=derived[0]["test_accuracy"],
                       derived_n_params=derived[0]["n_params"])
    if randoms:
        accuracies = [r["test_accuracy"] for r in randoms]
        summary.update(random_test_accuracy_mean=statistics.fmean(accuracies),
                       random_test_accuracy_std=statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
                       random_n_params_mean=statistics.fmean(r["n_params"] for r in randoms),
                       n_random_measured=float(len(randoms)))
    return rows, summary


def _log_comparison(result: SearchResult, rows: list[dict[str, Any]], summary: dict[str, float]) -> None:
    """The comparison on the search's parent run; a failure warns (the trials' runs stay)."""
    from mlflow import MlflowClient

    try:
        client = MlflowClient(result.tracking_uri)
        for name, value in summary.items():
            client.log_metric(result.parent_run_id, name, value)
        client.log_text(result.parent_run_id, _csv(rows), COMPARISON_CSV)
        client.log_text(result.parent_run_id, _markdown(rows, summary), COMPARISON_MD)
    except Exception as exc:  # the search's results must be kept whatever the logging does
        logger.warning("logging the comparison to run %s failed (%s: %s)", result.parent_run_id,
                       type(exc).__name__, exc)


def _csv(rows: list[dict[str, Any]]) -> str:
    import csv

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["genotype"])
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _markdown(rows: list[dict[str, Any]], summary: dict[str, float]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "-"
        return f"{value:,.0f}" if isinstance(value, float) and value > 1000 else (
            f"{value:.4f}" if isinstance(value, float) else str(value))

    lines = ["| genotype | test accuracy | val accuracy | parameters | status |", "|---|---|---|---|---|"]
    lines += [f"| {r['genotype']} | {cell(r['test_accuracy'])} | {cell(r['val_accuracy'])} | "
              f"{cell(r['n_params'])} | {r['status']} |" for r in rows]
    if "random_test_accuracy_mean" in summary:
        lines.append(f"\nrandom genotypes ({summary['n_random_measured']:.0f}): test accuracy "
                     f"{summary['random_test_accuracy_mean']:.4f} ± "
                     f"{summary['random_test_accuracy_std']:.4f} "
                     f"(mean ± std), {summary['random_n_params_mean']:,.0f} parameters on average")
    if "derived_test_accuracy" in summary:
        lines.append(f"derived genotype: test accuracy {summary['derived_test_accuracy']:.4f}, "
                     f"{summary['derived_n_params']:,.0f} parameters")
    return "\n".join(lines) + "\n"
