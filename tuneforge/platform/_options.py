"""How to run a search: :class:`SearchOptions`, whose fields are also ``tuneforge search``'s flags.

Each field that is a flag carries its help (and any other ``add_argument`` setting) in its
metadata under :data:`FLAG`; the CLI makes its flags from them, with the fields' defaults and
types. The module imports nothing heavy, so that ``tuneforge --help`` stays cheap.
"""

from __future__ import annotations

from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from tuneforge.search_spaces import DEFAULT_GRID_POINTS

__all__ = ["FLAG", "SearchOptions", "flag_fields"]

FLAG = "tuneforge.flag"
"""The metadata key of a field's flag settings: ``help``, and ``metavar`` where it has one."""


def _flag(help_text: str, **settings: Any) -> dict[str, Any]:
    """The metadata of a field that is also the flag ``--<its name, dashed>``."""
    return {FLAG: {"help": help_text, **settings}}


@dataclass(frozen=True, kw_only=True)
class SearchOptions:
    """How to run a search; every field but ``tags`` is the CLI flag of the same name
    (``max_concurrent``: ``--max-concurrent``), and its help (the field's metadata) says what
    it does. In the order of ``tuneforge search --help``."""

    algo: str = field(default="random", metadata=_flag(
        "grid, random, bayes (our GP), optuna-tpe or optuna-gp (default: random)"))
    trials: int | None = field(default=None, metadata=_flag(
        "random: trials (default 20); grid: passes over the grid (default 1)"))
    max_concurrent: int | None = field(default=None, metadata=_flag(
        "most trials running at once (default: as resources allow)"))
    seed: int | None = field(default=None, metadata=_flag("random seed (default: drawn, and logged)"))
    """None draws one; it is logged on the parent run so the search can be repeated."""
    experiment: str | None = field(default=None, metadata=_flag(
        "MLflow experiment (default: the space's name)"))
    tracking_uri: str | None = field(default=None, metadata=_flag(
        "MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)"))
    address: str | None = field(default=None, metadata=_flag(
        "Ray cluster (default: $RAY_ADDRESS, else a local Ray)"))
    cpus_per_trial: float = field(default=1.0, metadata=_flag("CPUs per trial (default 1)"))
    gpus_per_trial: float = field(default=0.0, metadata=_flag(
        "GPUs per trial, fractions allowed (default 0)"))
    workers_per_trial: int = field(default=1, metadata=_flag(
        "run each trial of a torch family data-parallel on N Ray Train workers (DDP), each with "
        "--cpus-per-trial CPUs and --gpus-per-trial GPUs (default 1)"))
    cluster_config: str | Path | None = field(default=None, metadata=_flag(
        "the cluster's `ray up` config, whose node types the autoscaler can start (default on a "
        "`ray up` head node: ~/ray_bootstrap_config.yaml)", metavar="YAML"))
    storage: str | Path | None = field(default=None, metadata=_flag(
        "Ray Tune's storage: a folder, or a URI every node reaches (s3://bucket/path); "
        "checkpoints live there (default: ./ray_results)"))
    """Also ``file:///nfs/path``; a Path from Python."""
    smoke: bool = field(default=False, metadata=_flag(
        "shrink each trial of a per-epoch family (vit...) to seconds: 2 epochs, small data"))
    """SMOKE_EPOCHS epochs on a small subset."""
    max_failures: int = field(default=0, metadata=_flag(
        "restart a trial whose worker died this many times, from its last checkpoint (default 0)"))
    """Tune's FailureConfig."""
    keep_checkpoints: int = field(default=2, metadata=_flag(
        "checkpoints kept per trial: the best N by the metric, and the latest (default 2)"))
    scheduler: str | None = field(default=None, metadata=_flag(
        "stop bad trials early: asha, hyperband, median or none (default: asha for a family that "
        "reports every epoch (vit, transformer, the GANs, darts), none for the others and --smoke)"))
    """See :mod:`tuneforge.platform.schedulers`."""
    max_epochs: int | None = field(default=None, metadata=_flag(
        "the scheduler's longest trial in epochs (default: the space's max_epochs, else its "
        "config.epochs)"))
    grace_period: int | None = field(default=None, metadata=_flag(
        "epochs every trial runs before a scheduler may stop it (default: the space's "
        "grace_period, else 1)"))
    start_from: str | None = field(default=None, metadata=_flag(
        "evaluate these first: defaults (the family's default config, then the space's "
        "start_from: list), space (only the space's list) or none (default: defaults for a family "
        "that reports every epoch, space for the others)"))
    """See :mod:`tuneforge.platform.starting_points`."""
    warm_start: str | None = field(default=None, metadata=_flag(
        "learn from earlier searches in the MLflow store: an experiment's name or id, or a search's "
        "parent run id; bayes and optuna-* condition on their scored trials, random and grid start "
        "from the best few", metavar="EXPERIMENT_OR_RUN_ID"))
    time_budget: str | None = field(default=None, metadata=_flag(
        "end the search after this long, counted from its first trial (90s, 45m, 2h); without "
        "--trials, as many trials as fit", metavar="DURATION"))
    register_model: str | None = field(default=None, metadata=_flag(
        "register the best trial's model in the MLflow Model Registry as NAME", metavar="NAME"))
    grid_points: int = field(default=DEFAULT_GRID_POINTS, metadata=_flag(
        f"grid: values per numeric param without an explicit `grid:` (default {DEFAULT_GRID_POINTS})"))
    tags: tuple[tuple[str, str], ...] = ()
    """Extra tags of the search's parent run (``tuneforge compare`` groups its searches so);
    no flag."""


def flag_fields() -> tuple[Field[Any], ...]:
    """The fields of :class:`SearchOptions` that are flags, in their ``--help`` order."""
    return tuple(option for option in fields(SearchOptions) if FLAG in option.metadata)
