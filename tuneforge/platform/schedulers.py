"""Early stopping, by the name ``--scheduler`` takes: Ray Tune's trial schedulers.

A scheduler watches every trial's results and stops the ones that are clearly worse than
others at the same point, so the search spends its epochs on the promising ones. Its budgets
come from the space (``max_epochs``, ``grace_period``), which the CLI may override, counted in
the trainable's steps (its ``step_metric``): a torch family's ``epoch``, else Tune's
``training_iteration``, one per result. A family that reports every epoch runs under ``asha``
unless ``--scheduler`` says otherwise (each bundled space sets its ``grace_period``); the others,
and ``--smoke`` searches, under ``none``.

- ``asha``: Ray Tune's ASHAScheduler (asynchronous successive halving): rungs at
  ``grace_period * 3**k`` epochs, where a trial goes on only if it is in the best third of
  the trials that reached that rung.
- ``hyperband``: HyperBandScheduler, brackets of successive halving up to ``max_epochs``
  (reduction factor 3); it pauses trials and resumes them from their checkpoints.
- ``median``: MedianStoppingRule: after ``grace_period`` epochs, a trial whose best result is
  worse than the median of the other trials' running averages at the same epoch stops.

A trial a scheduler stopped is STOPPED (:class:`~tuneforge.schema.TrialStatus`): it ended
without error before ``max_epochs``. Its result, as for every trial, is its last one.
The runner is the only caller; families know nothing of schedulers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tuneforge._checks import did_you_mean, is_int
from tuneforge.errors import ConfigError
from tuneforge.search_spaces import IntParam, SearchSpace
from tuneforge.trainables._base import SMOKE_EPOCHS, Trainable

__all__ = ["PROGRESS", "SCHEDULERS", "Schedule", "default_scheduler", "epochs_line", "plan_schedule",
           "progress_key"]

_REDUCTION_FACTOR = 3
_TORCH_LOOP_STEP = "epoch"
"""The step metric of the torch loop, which also reports ``progress``."""
PROGRESS = "progress"
_MEDIAN_MIN_SAMPLES = 3


def _asha(schedule: Schedule) -> Any:
    from ray.tune.schedulers import ASHAScheduler

    if schedule.fewest_epochs is not None:  # rungs at fractions of each trial's own epochs
        return ASHAScheduler(time_attr=PROGRESS, max_t=1.0,
                             grace_period=schedule.grace_period / schedule.fewest_epochs,
                             reduction_factor=_REDUCTION_FACTOR)
    return ASHAScheduler(time_attr=schedule.time_attr, max_t=schedule.max_epochs,
                         grace_period=schedule.grace_period, reduction_factor=_REDUCTION_FACTOR)


def _hyperband(schedule: Schedule) -> Any:
    from ray.tune.schedulers import HyperBandScheduler

    return HyperBandScheduler(time_attr=schedule.time_attr, max_t=schedule.max_epochs,
                              reduction_factor=_REDUCTION_FACTOR)


def _median(schedule: Schedule) -> Any:
    from ray.tune.schedulers import MedianStoppingRule

    return MedianStoppingRule(time_attr=schedule.time_attr, grace_period=schedule.grace_period,
                              min_samples_required=_MEDIAN_MIN_SAMPLES)


SCHEDULERS: Mapping[str, Callable[[Schedule], Any] | None] = {
    "none": None,
    "asha": _asha,
    "hyperband": _hyperband,
    "median": _median,
}


@dataclass(frozen=True)
class Schedule:
    """A validated scheduler choice and its budgets, in training iterations (epochs)."""

    name: str
    max_epochs: int
    grace_period: int
    time_attr: str = "training_iteration"
    """The result key the scheduler counts steps by (the trainable's ``step_metric``)."""
    fewest_epochs: int | None = None
    """Set where the space searches ``epochs`` (the lowest it takes) and the trainable is the
    torch loop: ``asha`` then counts each trial's ``progress`` (epochs done / its own epochs) and
    places its rungs at ``grace_period / fewest_epochs`` of a trial and 3x that, so that trials of
    different lengths meet at the same point of their learning-rate schedules. (At the same
    epoch, a shorter trial has already cooled its learning rate and looks better than it will
    end, so the longer trial would be stopped for being longer.)"""

    def describe(self) -> str:
        """The schedule in a few words, for the search's first lines: "asha (grace 2, max 8
        epochs)", or "asha (rungs at 25% and 75% of each trial's epochs, 8-24)"."""
        if self.fewest_epochs is None or self.name != "asha":
            return f"{self.name} (grace {self.grace_period}, max {self.max_epochs} epochs)"
        first = self.grace_period / self.fewest_epochs
        rungs = [first * _REDUCTION_FACTOR ** k for k in range(8) if first * _REDUCTION_FACTOR ** k < 1]
        shown = " and ".join(f"{rung:.0%}" for rung in rungs)
        return (f"{self.name} (rungs at {shown} of each trial's epochs, "
                f"{self.fewest_epochs}-{self.max_epochs})")

    def build(self) -> Any:
        """A fresh Ray Tune ``TrialScheduler``; the Tuner gives it the metric and mode."""
        return SCHEDULERS[self.name](self)

    def stopped_early(self, result: Mapping[str, Any]) -> bool:
        """Whether a trial that ended without error with this last ``result`` was stopped: it
        had not done its epochs (a torch family's ``progress`` below 1), or, for a trainable
        that does not report ``progress``, had not reached ``max_epochs``."""
        progress = result.get("progress")
        if isinstance(progress, (int, float)):
            return progress < 1.0
        return int(result.get(self.time_attr, 0)) < self.max_epochs


def default_scheduler(trainable: Trainable, *, smoke: bool = False) -> str:
    """``--scheduler``'s default: ``asha`` for a family that reports every epoch (vit,
    transformer, the GANs, darts), ``none`` for the others (one result a trial, or a user's
    function, which may report once) and for ``--smoke`` trials (two epochs: nothing to save)."""
    return "asha" if trainable.iterative is True and not smoke else "none"


def plan_schedule(name: str | None, space: SearchSpace, trainable: Trainable, *,
                  max_epochs: int | None = None, grace_period: int | None = None,
                  smoke: bool = False) -> Schedule | None:
    """The schedule of ``--scheduler name`` (None: :func:`default_scheduler`; no schedule for
    ``none``), its budgets from the options, else the space (not its ``grace_period`` under
    ``smoke``), else the config's ``epochs``, else the family's; ConfigError with one line
    otherwise."""
    name = name or default_scheduler(trainable, smoke=smoke)
    if name not in SCHEDULERS:
        raise ConfigError(f"--scheduler: unknown scheduler {name!r}; valid: {', '.join(SCHEDULERS)}"
                          f"{did_you_mean(name, SCHEDULERS)}")
    where = space.source or space.name
    for flag, value in (("--max-epochs", max_epochs), ("--grace-period", grace_period)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag}: expected at least 1, got {value}")
    if name == "none":
        return None
    if trainable.iterative is False:
        raise ConfigError(f"--scheduler {name}: trainable {trainable.name!r} reports once a trial, so there "
                          "is nothing to stop early; schedulers need a per-epoch family (vit, ...)")
    longest = max_epochs or space.max_epochs or _config_epochs(space) or _default_epochs(space, trainable)
    if longest is None:
        raise ConfigError(f"--scheduler {name}: {where} says nothing of how long a trial runs; give "
                          "--max-epochs, or max_epochs (or config.epochs) in the space")
    if smoke:
        longest = min(longest, SMOKE_EPOCHS)
    # A --smoke trial's two epochs are shorter than a space's grace, which is sized for full trials.
    grace = grace_period or (None if smoke else space.grace_period) or 1
    if grace > longest:
        raise ConfigError(f"--scheduler {name}: grace_period {grace} is more than max_epochs {longest}; "
                          "a trial would never be stopped early")
    fewest = _searched_epochs_low(space) if progress_key(space, trainable) == PROGRESS and not smoke else None
    if fewest is not None and grace > fewest:
        raise ConfigError(f"--scheduler {name}: grace_period {grace} is more than the fewest epochs a trial "
                          f"runs ({fewest}, epochs' low); a trial that short would never be stopped early")
    return Schedule(name=name, max_epochs=longest, grace_period=grace, time_attr=trainable.step_metric,
                    fewest_epochs=fewest)


def progress_key(space: SearchSpace, trainable: Trainable) -> str:
    """The result key that says how far a trial got, for schedulers and for the GP's rule on
    stopped trials: ``progress`` (epochs done / the trial's own epochs) where a torch family's
    space searches ``epochs``, so trials of different lengths compare at the same point of their
    schedules; else the trainable's ``step_metric``."""
    if trainable.step_metric == _TORCH_LOOP_STEP and _searched_epochs_low(space) is not None:
        return PROGRESS
    return trainable.step_metric


def epochs_line(space: SearchSpace) -> str:
    """How long the space's trials run and when a scheduler may stop one, for ``tuneforge show``:
    "up to 8; a scheduler may stop a trial after 2", or, where ``epochs`` is searched, "8-24,
    searched; asha may stop a trial after 25% of its epochs"."""
    grace = space.grace_period or 1
    low = _searched_epochs_low(space)
    if low is None:
        longest = space.max_epochs or _config_epochs(space)
        return f"up to {longest}; a scheduler may stop a trial after {grace}"
    return (f"{low}-{_config_epochs(space)}, searched; asha may stop a trial after {grace / low:.0%} of its "
            f"epochs (hyperband and median after {grace})")


def _searched_epochs_low(space: SearchSpace) -> int | None:
    """The lowest value of a searched ``epochs``; None where the space fixes it."""
    param = _searched_epochs(space)
    return int(param.low) if param is not None else None


def _searched_epochs(space: SearchSpace) -> IntParam | None:
    """The space's searched ``epochs``, if it searches it."""
    return next((p for p in space.params if p.name == "epochs" and isinstance(p, IntParam)), None)


def _default_epochs(space: SearchSpace, trainable: Trainable) -> int | None:
    """The epochs a trial runs when the space does not say: the family's default."""
    epochs = trainable.defaults(space.config).get("epochs") if trainable.defaults else None
    return epochs if is_int(epochs, minimum=1) else None


def _config_epochs(space: SearchSpace) -> int | None:
    """The space's epochs: fixed in its config, or the highest a searched ``epochs`` takes."""
    epochs = space.config.get("epochs")
    if is_int(epochs):
        return epochs
    param = _searched_epochs(space)
    return int(param.high) if param is not None else None
