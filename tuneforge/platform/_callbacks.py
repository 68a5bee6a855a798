"""The Tune callback that turns trial events into MLflow writes and progress events."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.result import AUTO_RESULT_KEYS

from tuneforge._checks import is_number
from tuneforge.platform.events import TrialEnded, TrialResult, TrialStarted
from tuneforge.platform.schedulers import Schedule
from tuneforge.platform.tracking import ENDED, SCORED, SearchRecorder
from tuneforge.schema import TrialStatus
from tuneforge.search_spaces import SearchSpace
from tuneforge.trainables.user import check_reported

__all__ = ["TrialEvents", "live_events"]

# Tune's bookkeeping, not the trainable's metrics.
_TUNE_KEYS = frozenset(AUTO_RESULT_KEYS) | {"done", "trial_id", "experiment_tag", "should_checkpoint"}


def trial_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The numeric metrics a trainable reported, without Tune's own keys."""
    return {key: float(value) for key, value in result.items()
            if key not in _TUNE_KEYS and is_number(value, finite=False)}


_MAX_RUN_NAME = 120


def run_name(trial_id: str, params: dict[str, Any]) -> str:
    """A trial's MLflow run name: its number in the search and its searched values
    (``trial 7: lr=0.0031 depth=4``), what the MLflow UI's run list shows."""
    from tuneforge.platform.progress import format_value

    number = trial_id.rsplit("_", 1)[-1]
    label = f"trial {int(number) + 1}" if number.isdigit() else f"trial {trial_id}"
    values = " ".join(f"{name}={format_value(value)}" for name, value in params.items())
    name = f"{label}: {values}" if values else label
    return name if len(name) <= _MAX_RUN_NAME else name[:_MAX_RUN_NAME - 1] + "…"


class TrialEvents(Callback):
    """Runs on the driver: records each trial in MLflow as its events arrive (its artifacts
    with each result) and tells the caller (``notify``) of each trial's start, results and end.

    ``check_metric``: the trainable is a user's function whose metrics are known only when it
    reports; a trial that ended without ever reporting the space's metric is recorded FAILED.
    ``schedule``: the search's scheduler; a trial it stopped early is recorded STOPPED.
    ``step_metric``: the result key that is a result's MLflow step (the trainable's).
    ``run_params``: the trainable's params for a trial's run besides the searched ones.
    ``budget``: the search's time budget (a :class:`~.budget.TimeBudget`); the trials still
    running when it is spent are recorded STOPPED at the epoch they reached. A user's trial that
    never reported the space's metric stops the search with it: the next would not either.
    ``kept``: the trials a search rebuilt from MLflow keeps from before (never closed as lost).
    """

    def __init__(self, name: str, recorder: SearchRecorder, space: SearchSpace, n_trials: int | None,
                 notify: Callable[[Any], None], artifacts: Path, *, check_metric: bool = False,
                 schedule: Schedule | None = None, step_metric: str = "training_iteration",
                 run_params: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None,
                 budget: Any = None, kept: frozenset[str] = frozenset()) -> None:
        self.name = name
        """The Tune experiment's name: how a restored experiment finds this callback again."""
        self.recorder = recorder
        self.artifacts = artifacts
        """Where the search's artifact inbox puts each trial's files (``<trial_id>/<batch>/``)."""
        self.space = space
        self.n_trials = n_trials
        self.notify = notify
        self.check_metric = check_metric
        self.schedule = schedule
        self.step_metric = step_metric
        self.run_params = run_params
        self.budget = budget
        self.kept = kept
        """Trials a rebuilt search keeps from before (its Tune state lost): Tune never knows them."""
        ended = [t for t in recorder.trials.values() if t.status in ENDED]
        self.n_ended = len(ended)
        """Trials ended so far (a resumed search counts those its recorder knew)."""
        self.best_score: float | None = None
        for record in ended:
            self._count_score(record)
        self.replayed = {t.trial_id for t in ended if t.status in SCORED}
        """Trials already ended in MLflow: a resumed search that Ray Tune had not saved as
        ended replays their last result (see the runner); nothing is written again."""
        self.unsettled = {t.trial_id for t in recorder.trials.values() if t.status not in ENDED}
        """A resumed search's trials that were running when it was interrupted, until they
        start again: one that Ray Tune had saved as ended never does (see on_experiment_end)."""
        _LIVE[name] = self

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # Tune pickles its callbacks with the experiment (tuner.pkl). The recorder (a thread
        # and a store connection) cannot go with them: the pickle names the search, and
        # unpickling it in a resumed search's driver gives that driver's live callback.
        return live_events, (self.name,)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self.budget is not None:
            self.budget.start()
        self.unsettled.discard(trial.trial_id)
        if trial.trial_id in self.replayed:
            return
        params = {name: trial.config[name] for name in self.space.param_names}
        described = self.run_params(trial.config) if self.run_params else {}
        if self.recorder.start_trial(trial.trial_id, run_name(trial.trial_id, params), params, described):
            self.notify(TrialStarted(self.recorder.trials[trial.trial_id]))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """A resumed search's trials that ended in Ray Tune's saved experiment but not in
        MLflow (the driver died between the two, or the store lost their writes) are recorded
        in MLflow from Tune's last result; trial runs that Tune does not know (created after its
        last save of the experiment, before the driver died) are closed as lost."""
        known = {trial.trial_id for trial in trials}
        for trial in trials:  # ended in Tune's saved state, not yet in MLflow's
            # It reported, but the store lost its writes (a store failure): no run at all. (A
            # trial Tune ended before it started, as a stopped search's, has no reported result.)
            unrecorded = (trial.trial_id not in self.recorder.trials
                          and "training_iteration" in (trial.last_result or {}))
            if trial.trial_id not in self.unsettled and not unrecorded:
                continue
            if unrecorded and trial.status in ("TERMINATED", "ERROR"):
                self.on_trial_start(0, trials, trial)
            if trial.status == "TERMINATED":
                self.on_trial_result(0, trials, trial, trial.last_result or {})
                self.on_trial_complete(0, trials, trial)
            elif trial.status == "ERROR":
                self.on_trial_error(0, trials, trial)
        for trial_id in [t for t in self.recorder.trials if t not in known and t not in self.kept]:
            self.recorder.mark_lost(trial_id, "Ray Tune had not saved this trial when its driver died; its "
                                              "configuration may have been tried again as another trial")
        if self.budget is not None and self.budget.stopped:
            self._stopped_by_budget(trials)

    def _stopped_by_budget(self, trials: list) -> None:
        """The trials Tune stopped when the search was stopped (its time budget spent, or
        :meth:`~.budget.TimeBudget.stop_search`): STOPPED, with their last result."""
        for trial in trials:
            record = self.recorder.trials.get(trial.trial_id)
            if trial.status == "TERMINATED" and record is not None and record.status not in ENDED:
                self.recorder.end_trial(trial.trial_id, TrialStatus.STOPPED,
                                        artifacts=self.artifacts / trial.trial_id,
                                        no_score=self._no_score(record), then=self._ended(trial))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if trial.trial_id in self.replayed:
            return
        step = int(result.get(self.step_metric, result.get("training_iteration", 0)))
        device = result.get("device")
        self.recorder.log_metrics(trial.trial_id, trial_metrics(result), step=step,
                                  node_ip=result.get("node_ip"),
                                  device=device if isinstance(device, str) else None,
                                  artifacts=self.artifacts / trial.trial_id)
        progress = result.get("progress")
        self.notify(TrialResult(self.recorder.trials[trial.trial_id], step,
                                float(progress) if isinstance(progress, (int, float)) else None))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.trial_id in self.replayed:
            return
        record = self.recorder.trials[trial.trial_id]
        error = check_reported(self.space, set(record.metrics)) if self.check_metric else None
        if error:
            status = TrialStatus.FAILED
            if self.budget is not None:
                self.budget.stop_search(f"trial {trial.trial_id}: {error}; the search stopped after it, "
                                        "as the other trials run the same function")
        elif self.schedule is not None and self.schedule.stopped_early(trial.last_result or {}):
            status = TrialStatus.STOPPED
        else:
            status = TrialStatus.FINISHED
        self.recorder.end_trial(trial.trial_id, status, artifacts=self.artifacts / trial.trial_id,
                                error=error, no_score=None if error else self._no_score(record),
                                then=self._ended(trial))

    def _no_score(self, record: Any) -> str | None:
        """Why a trial that ended without error has no score: its last metric was not finite."""
        value = record.metrics.get(self.space.metric)
        if value is None or math.isfinite(value):
            return None
        return f"its last {self.space.metric} was {value}"

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # Tune writes the error to the trial's local folder just before calling us.
        error = Path(trial.error_file).read_text() if trial.error_file else None
        self.recorder.end_trial(trial.trial_id, TrialStatus.FAILED, artifacts=self.artifacts / trial.trial_id,
                                error=error, then=self._ended(trial))

    def _ended(self, trial: Any) -> Callable[[], None]:
        """Count the trial as ended; what tells the caller so (:class:`TrialEnded`) once its run
        is written: a trial is never shown as scored where the store could not record it."""
        self.n_ended += 1
        record = self.recorder.trials[trial.trial_id]
        self._count_score(record)
        event = TrialEnded(record, self.n_ended, self.n_trials, self.best_score)
        return lambda: self.notify(event)

    def _count_score(self, record: Any) -> None:
        score = record.metrics.get(self.space.metric)
        if score is not None and math.isfinite(score) and (
                self.best_score is None
                or (score > self.best_score if self.space.mode == "max" else score < self.best_score)):
            self.best_score = score


_LIVE: dict[str, TrialEvents] = {}


def live_events(name: str) -> TrialEvents:
    """The callback of the search ``name`` in this driver: what Tune's pickled callback becomes
    when :func:`ray.tune.Tuner.restore` loads it (the runner makes it first)."""
    try:
        return _LIVE[name]
    except KeyError:
        raise RuntimeError(f"search {name} is a tuneforge search: continue it with `tuneforge resume` "
                           "(or tuneforge.resume), not Tuner.restore") from None
