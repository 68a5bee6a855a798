"""A running search as a person watches it: start-up stages as they happen, where the search
runs, a line per ended trial, and a live status (running / pending / finished / stopped /
failed, epochs done, elapsed, time left, best so far).

On a terminal the status is one line redrawn in place, with a progress bar; piped (a log file,
CI, a notebook) it is a plain line at most every ``interval_s`` seconds. The CLI and
``tuneforge.search(progress=True)`` print through :class:`SearchProgress`.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

from tuneforge.platform.events import (
    RayLost,
    SearchEvent,
    SearchStarted,
    Stage,
    TrialEnded,
    TrialResult,
    TrialStarted,
)
from tuneforge.platform.tracking import ENDED
from tuneforge.schema import TrialStatus

__all__ = ["SearchProgress", "format_value"]

_BAR_WIDTH = 20
_CLEAR_LINE = "\r\x1b[K"


def format_value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m{seconds:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


class SearchProgress:
    """Call it with each event of a search (``search(..., on_event=SearchProgress())``)."""

    def __init__(self, *, stream: TextIO | None = None, live: bool | None = None,
                 interval_s: float = 30.0) -> None:
        self.stream = stream
        self.live = live
        self.interval_s = interval_s
        self._started_at = time.monotonic()
        self._search_started_at: float | None = None
        self._last_status_at = 0.0
        self._metric = ""
        self._n_trials: int | None = 0
        self._budget_s: float | None = None
        self._n_started = 0
        self._n_results = 0
        self._progress: dict[str, float] = {}
        self._ended: dict[TrialStatus, int] = dict.fromkeys(TrialStatus, 0)
        self._best: float | None = None
        self._status_shown = False
        self._lock = threading.Lock()

    @property
    def _out(self) -> TextIO:
        return self.stream or sys.stdout

    @property
    def _is_live(self) -> bool:
        return self.live if self.live is not None else self._out.isatty()

    def __call__(self, event: SearchEvent) -> None:
        handler = {Stage: self._stage, SearchStarted: self._search_started, TrialStarted: self._trial_started,
                   TrialResult: self._trial_result, TrialEnded: self._trial_ended,
                   RayLost: self._ray_lost}[type(event)]
        with self._lock:  # TrialEnded comes from the store's writer thread
            handler(event)

    def _print(self, text: str) -> None:
        if self._status_shown:
            self._out.write(_CLEAR_LINE)
            self._status_shown = False
        print(text, file=self._out, flush=True)

    def _stage(self, event: Stage) -> None:
        self._print(f"  {time.monotonic() - self._started_at:5.1f}s  {event.text}")

    def _search_started(self, event: SearchStarted) -> None:
        self._search_started_at = self._last_status_at = time.monotonic()
        self._metric, self._n_trials = event.plan.space.metric, event.plan.setup.n_trials
        if event.plan.time_budget_s is not None:
            self._budget_s = event.plan.time_budget_s - event.time_used_s
        for line in _started_lines(event):
            self._print(line)
        ended = [record for record in event.known
                 if record.status in ENDED]
        for record in event.known:
            self._n_started += 1
            self._progress[record.trial_id] = 1.0 if record in ended else 0.0
        for record in ended:
            self._ended[record.status] += 1
        if event.known:
            of = f" of {self._n_trials}" if self._n_trials else ""
            running = len(event.known) - len(ended)
            self._print(f"Resuming: {len(ended)}{of} trials ended before, "
                        f"{running} {'was' if running == 1 else 'were'} running")

    def _trial_started(self, event: TrialStarted) -> None:
        self._n_started += 1
        self._progress[event.record.trial_id] = 0.0
        self._show_status(force=self._n_started == 1)  # the trials are running: say so at once

    def _trial_result(self, event: TrialResult) -> None:
        self._n_results += 1
        if event.progress is not None:
            self._progress[event.record.trial_id] = min(1.0, event.progress)
        self._show_status()

    def _trial_ended(self, event: TrialEnded) -> None:
        record = event.record
        total = f"/{event.n_trials}" if event.n_trials else ""
        width = len(str(event.n_trials)) if event.n_trials else 3
        self._ended[record.status] += 1
        self._progress[record.trial_id] = 1.0
        self._best = event.best_score
        score = record.metrics.get(self._metric)
        outcome = f"{self._metric}={format_value(score)}" if score is not None else str(record.status)
        if record.error:
            outcome = f"FAILED: {record.error}"
        best = f"best={format_value(event.best_score)}  " if event.best_score is not None else ""
        params = " ".join(f"{name}={format_value(value)}" for name, value in record.params.items())
        self._print(f"[{event.n_ended:>{width}}{total}] {record.trial_id}  {outcome}  "
                    f"{best}{params}")
        self._show_status(force=not self._is_live)

    def _ray_lost(self, event: RayLost) -> None:
        from tuneforge.platform.resume import resume_command

        self._print(f"this search's Ray lost {event.what}; the search stopped, what finished is in MLflow; "
                    f"continue with: {resume_command(event.experiment_path)}")

    def status_line(self) -> str:
        """The live status as text (also what a terminal's line shows, less the bar)."""
        n_ended = sum(self._ended.values())
        elapsed = time.monotonic() - (self._search_started_at or self._started_at)
        done = self._done()
        if self._budget_s is not None:
            left = f"{_duration(max(0.0, self._budget_s - elapsed))} of the time budget left"
        else:
            left = f"~{_duration(elapsed / done * (1 - done))} left" if 0 < done < 1 else ""
        best = f"best {self._metric}={format_value(self._best)}" if self._best is not None else ""
        ended = self._ended
        pending = f"pending {self._n_trials - self._n_started}  " if self._n_trials else ""
        counts = (f"running {self._n_started - n_ended}  {pending}"
                  f"finished {ended[TrialStatus.FINISHED]}  stopped {ended[TrialStatus.STOPPED]}  "
                  f"failed {ended[TrialStatus.FAILED]}")
        parts = [counts, f"results {self._n_results}", f"{_duration(elapsed)} elapsed", left, best]
        return "  |  ".join(part for part in parts if part)

    def _done(self) -> float:
        """The fraction of the search done: of its time budget, else of its trials' work."""
        if self._budget_s is not None:
            elapsed = time.monotonic() - (self._search_started_at or self._started_at)
            return min(1.0, elapsed / self._budget_s) if self._budget_s > 0 else 1.0
        return sum(self._progress.values()) / self._n_trials if self._n_trials else 0.0

    def _show_status(self, *, force: bool = False) -> None:
        if self._is_live:
            done = self._done()
            filled = round(done * _BAR_WIDTH)
            bar = f"[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {done:4.0%}"
            self._out.write(f"{_CLEAR_LINE}{bar}  {self.status_line()}")
            self._out.flush()
            self._status_shown = True
        elif force or time.monotonic() - self._last_status_at >= self.interval_s:
            self._last_status_at = time.monotonic()
            print(f"  status: {self.status_line()}", file=self._out, flush=True)



def _dashboard_line(cluster: Any) -> str:
    """Where the Ray dashboard is, the search's job in it, and whether it outlives the search."""
    if cluster.is_local:
        lasts = ("this search's own Ray, which stops with it (README: keep one up with `ray start "
                 "--head`, then --address auto)")
    else:
        lasts = "it stays up after the search" + (
            " (from your machine: `ray dashboard cluster.yaml`)" if cluster.cluster_config else "")
    return (f"dashboard {cluster.dashboard_url}, job {cluster.job_name!r}: {lasts}; it asks for the token "
            "`ray get-auth-token` prints")

def _started_lines(event: SearchStarted) -> list[str]:
    plan, cluster = event.plan, event.cluster
    space, options = plan.space, plan.options
    n_cpus = sum(node.get("CPU", 0) for node in cluster.node_resources)
    n_gpus = sum(node.get("GPU", 0) for node in cluster.node_resources)
    ray_text = "local Ray" if cluster.is_local else f"Ray cluster {cluster.address}"
    seed = "" if options.algo == "grid" else f", seed {plan.seed}"  # a grid draws nothing
    schedule = plan.schedule
    stopping = f", {schedule.describe()}" if schedule else ""
    workers = f", {options.workers_per_trial} workers a trial" if options.workers_per_trial > 1 else ""
    budget = f", {_duration(plan.time_budget_s)} budget" if plan.time_budget_s is not None else ""
    trials = f"{plan.setup.n_trials} trials" if plan.setup.n_trials else "trials until the budget ends"
    lines = [f"Searching {space.name} ({plan.trainable.name}, {space.mode} {space.metric}) with "
             f"{options.algo}: {trials}{budget}{seed}{stopping}{workers}"
             f"{', smoke budget' if options.smoke else ''}",
             f"  Ray:    {ray_text}, {len(cluster.node_resources)} node(s), {n_cpus:g} CPUs, {n_gpus:g} GPUs"]
    if cluster.dashboard_url:
        lines.append(f"          {_dashboard_line(cluster)}")
    lines.append(f"  MLflow: {plan.tracking_uri}, experiment {plan.experiment!r}, "
                 f"parent run {event.parent_run_id}")
    lines.append(f"  Tune:   {event.experiment_path}")
    if plan.start:
        first = " ".join(f"{name}={format_value(value)}" for name, value in plan.start.points[0].items())
        more = f", then {len(plan.start) - 1} more" if len(plan.start) > 1 else ""
        lines.append(f"  Start:  {plan.start.labels[0]} ({first}){more}")
    if plan.start.warning:
        lines.append(f"  Note:   {plan.start.warning}")
    if plan.warm_start is not None:
        lines.append(f"  Warm:   {plan.warm_start.summary()}")
    cost = _cost_line(plan, cluster)
    if cost:
        lines.append(f"  Cost:   {cost}")
    return lines


def _cost_line(plan: Any, cluster: Any) -> str | None:
    """What a full-size search will take, from the space's measured ``trial_minutes`` (the
    default config on a 2-CPU machine): a trial, and all of them where their number is known;
    None for a ``--smoke`` search or a space that says nothing of its cost."""
    space, options = plan.space, plan.options
    if options.smoke or not space.trial_minutes:
        return None
    from tuneforge.platform.cluster import TrialResources, concurrent_trials

    trial = TrialResources(cpus=options.cpus_per_trial, gpus=options.gpus_per_trial,
                           workers=options.workers_per_trial)
    at_once = concurrent_trials(cluster, trial)
    if options.max_concurrent:
        at_once = min(at_once, options.max_concurrent)
    text = f"about {space.trial_minutes:g} min a trial of the default config on 2 CPUs"
    if plan.time_budget_s is not None:
        text += f"; the time budget ({_duration(plan.time_budget_s)}) bounds the search"
    elif plan.setup.n_trials:
        total = plan.setup.n_trials * space.trial_minutes * 60 / at_once
        text += (f"; {plan.setup.n_trials} trials, {at_once} at a time: ~{_duration(total)} "
                 "(less where a scheduler stops trials)")
    return text + "; --smoke checks the set-up in a minute or two"
