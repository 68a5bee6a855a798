"""Wall-clock budgets: ``--time-budget 45m`` ends a search after that long; and the runner's
own early end of a search that cannot succeed (:meth:`TimeBudget.stop_search`).

The budget counts from the start of the search's first trial (in a resumed search, of its first
trial again) to its end. When it is spent, Ray Tune stops every trial still running (the runner
records them STOPPED at the epoch they reached) and suggests no more. A resumed search gets what
is left: the time used so far is kept in the search's ``search.json`` (``time_used_s``), written
every few seconds while it runs.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from ray.tune import Stopper

__all__ = ["USED_KEY", "TimeBudget", "live_budget"]

_RECORD_EVERY_S = 5.0
USED_KEY = "time_used_s"
"""The key of ``search.json`` that holds the seconds of budget a search used."""


class TimeBudget(Stopper):
    """Ray Tune's stopper of a whole search after ``seconds`` of its trial loop, of which
    ``used`` were spent before (a resumed search). Every few seconds it writes the time used
    into ``record`` (the search's ``search.json``) where given. ``spent`` says whether it
    ended the search. Every search has one (``seconds`` infinite without ``--time-budget``):
    :meth:`stop_search` ends it early, and ``stopped_because`` says why."""

    def __init__(self, name: str, seconds: float, *, used: float = 0.0, record: Path | None = None) -> None:
        self.name = name
        self.seconds = seconds
        self.used_before = used
        self.record = record
        self.spent = False
        self.stopped_because: str | None = None
        self._started: float | None = None
        self._recorded_at = 0.0
        _LIVE[name] = self

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # Tune pickles the stopper with the experiment; a resumed search's driver makes its own
        # (with what is left of the budget) before Tuner.restore unpickles this name into it.
        return live_budget, (self.name,)

    @property
    def used(self) -> float:
        """Seconds of the budget spent, the earlier drivers' included."""
        running = time.monotonic() - self._started if self._started is not None else 0.0
        return self.used_before + running

    @property
    def left(self) -> float:
        return max(0.0, self.seconds - self.used)

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def start(self) -> None:
        """Start the clock (the runner's callback, when the search's first trial starts)."""
        if self._started is None:
            self._started = time.monotonic()

    def stop_search(self, reason: str) -> None:
        """End the search now, for ``reason`` (one line; the first reason given stays): no trial
        starts again, and Tune stops the running ones at its next step."""
        self.stopped_because = self.stopped_because or reason

    @property
    def stopped(self) -> bool:
        """Whether the search was ended by its budget or by :meth:`stop_search`."""
        return self.spent or self.stopped_because is not None

    def stop_all(self) -> bool:
        """Called by Tune at every step of its loop: True once the budget is spent, or the
        search was stopped."""
        now = time.monotonic()
        if self.stopped_because is not None:
            return True
        if self._started is None:
            return False
        if now - self._recorded_at >= _RECORD_EVERY_S:
            self.save()
            self._recorded_at = now
        self.spent = self.spent or self.used >= self.seconds
        return self.spent

    def save(self) -> None:
        """Write the time used into ``record`` (atomically); a failure is ignored (the next
        write tries again, and a lost one only gives a resumed search a little more time)."""
        if self.record is None or not self.record.is_file():
            return
        try:
            data = json.loads(self.record.read_text())
            data[USED_KEY] = round(self.used, 1)
            folder = self.record.parent
            with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, suffix=".tmp") as handle:
                json.dump(data, handle, indent=2)
            os.replace(handle.name, self.record)
        except (OSError, ValueError):
            pass


_LIVE: dict[str, TimeBudget] = {}


def live_budget(name: str) -> TimeBudget:
    """The budget of the search ``name`` in this driver (what Tune's pickled stopper becomes in
    a resumed search); a search resumed without one gets none: a stopper that never stops."""
    budget = _LIVE.get(name)
    return budget if budget is not None else TimeBudget(name, math.inf)
