"""The contract every trainable family meets."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.search_spaces import SearchSpace

__all__ = ["SMOKE_EPOCHS", "Trainable"]

SMOKE_EPOCHS = 2
"""``--smoke``: a per-epoch family's trials run at most this many epochs (on a small subset)."""


@dataclass(frozen=True)
class Trainable:
    """A model family as Ray Tune runs it.

    ``function`` is what Ray runs, once per trial, on the worker Ray placed the trial on:
        ``train_<model>(config: dict) -> None``. It reads only ``config``, reports through
        :func:`tuneforge.trainables.report` (or ``tune.report``) at least once, resumes from
        ``tune.get_checkpoint()`` when there is one, and uses the GPU when Ray assigned one.
        Files it reports as ``artifacts`` become the trial's MLflow artifacts as each result
        arrives; checkpoints stay with Tune.
    ``prepare`` is called once by the runner, on the driver, before anything is created:
        it validates the space's fixed ``config`` and searched param names against the family
        (raising ConfigError with one clear message) and returns the fixed config every trial
        receives (defaults filled in, paths made absolute).
    ``check`` (optional) is called by ``plan_search`` on the driver, once, before Ray starts:
        the family's cheap checks of the space (its config's keys and their types, names),
        which import nothing heavy, so that such a mistake is refused in about a second.
        ConfigError with one line for the first problem; it returns nothing. ``prepare`` runs
        the same checks again (and every other), so it stays a complete validation.
    ``metrics`` names what ``function`` reports for a prepared config, so that a search on a
        metric nobody reports fails before it starts; None for a user's own function, whose
        metrics are known only when it reports (a trial that never reports the space's metric
        fails with that message).
    ``reuse_actors``: whether Tune may run the next trial in the same worker process (cheap for
        scikit-learn; torch families free their memory and threads with a fresh one).
    ``smoke``: whether ``--smoke`` applies (a per-epoch family shrinks its epochs and data).
    ``iterative``: whether a trial reports once per epoch (True: a scheduler can stop it early),
        once (False: scikit-learn, the benchmark functions), or either (None: a user's function).
    ``data_parallel``: whether ``function`` can run on several Ray Train workers at once (DDP:
        the torch families, whose loop shards each epoch and syncs gradients).
    ``final_model`` is called by the runner on the driver after the search, with the best
        trial's config and an empty folder, for a family whose trials do not log their own
        model: it writes an MLflow model folder (the best config refitted on all the data).
    """

    name: str
    function: Callable[[dict[str, Any]], None]
    prepare: Callable[[SearchSpace], dict[str, Any]]
    metrics: Callable[[Mapping[str, Any]], frozenset[str]] | None
    reuse_actors: bool = True
    smoke: bool = False
    iterative: bool | None = False
    data_parallel: bool = False
    compiles: bool = False
    """Whether its trials take ``compile: true`` (a torch family that trains through
    ``torch.compile``; see :mod:`tuneforge.trainables.torch.loop`)."""
    step_metric: str = "training_iteration"
    """The result key that counts a trial's steps, for schedulers, searchers and MLflow steps:
    Tune's own count of results, or the torch loop's ``epoch``, which a data-parallel trial
    keeps across restarts (Ray Train resumes it; Tune's count starts again)."""
    final_model: Callable[[Mapping[str, Any], Path], None] | None = None
    check: Callable[[SearchSpace], None] | None = None
    search_artifacts: Callable[[Mapping[str, Any]], dict[str, str]] | None = None
    """Called by the runner on the driver, once, with the prepared config, when the search's
    parent run is created: text files for the parent run (name -> content), such as the held-out
    test words of a Transformer's dataset."""
    run_params: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    """Called by the platform on the driver when a trial starts, with its whole config: params
    for the trial's MLflow run besides its searched ones, which anyone using its logged model
    needs (a GAN generator's ``latent_dim`` and ``n_classes``, fixed or searched)."""
    defaults: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None
    """Called on the driver before anything is created, with the space's fixed ``config``: the
    value each setting takes when a space leaves it out (the family's default config), from
    which ``--start-from defaults`` starts; None: the family has none (a user's function)."""
    code_dir: Path | None = None
    """A user's trainable file's folder, which the runner ships to every node (Ray's
    ``working_dir``)."""
