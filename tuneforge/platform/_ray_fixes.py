"""Work-arounds for Ray bugs that tuneforge meets, each small, idempotent and named.

Installed by the runner before a search's Tuner starts; each says which Ray versions it was
seen in, so that it can go when Ray fixes its bug.
"""

from __future__ import annotations

from typing import Any

__all__ = ["install", "memory_kill_reason"]


def install() -> None:
    """Install every work-around (a second call changes nothing)."""
    _forget_tasks_of_cancelled_actors()
    _stop_saving_trials_when_a_bracket_ends()
    _fail_trials_killed_for_memory()


def _forget_tasks_of_cancelled_actors() -> None:
    """Ray 2.60's ``RayActorManager.remove_actor`` cancels a pending actor without dropping
    the tasks queued for it (``_pending_actors_to_enqueued_actor_tasks``, a defaultdict). Tune
    queues tasks for each trial's actor before it starts and cancels actors it does not need
    (reusing a live one), so a long search keeps every cancelled actor and its tasks: ~1 in 7
    trials of a 2,000-trial random search of branin."""
    from ray.air.execution._internal.actor_manager import RayActorManager

    original = RayActorManager.remove_actor
    if getattr(original, "_tuneforge_fix", False):
        return

    def remove_actor(self: Any, tracked_actor: Any, *args: Any, **kwargs: Any) -> bool:
        was_alive = original(self, tracked_actor, *args, **kwargs)
        if tracked_actor not in self._pending_actors_to_attrs:
            self._pending_actors_to_enqueued_actor_tasks.pop(tracked_actor, None)
        return was_alive

    remove_actor._tuneforge_fix = True
    RayActorManager.remove_actor = remove_actor


def _stop_saving_trials_when_a_bracket_ends() -> None:
    """Ray 2.60's HyperBand ``_Bracket.cleanup_full`` stops the bracket's PAUSED trials when its
    last trial reaches the end, but not one that is still saving on its way to PAUSED (the rest
    of ``_process_bracket`` treats ``PAUSED or is_saving`` alike). Two trials that reach the
    bracket's end together under load meet it: the first is told to pause, the second ends the
    bracket while the first's save is in flight, the first then pauses in a finished bracket that
    never unpauses it, and Tune waits for it forever ("No trial is running and no new trial has
    been started")."""
    from ray.tune.experiment import Trial
    from ray.tune.schedulers.hyperband import _Bracket

    original = _Bracket.cleanup_full
    if getattr(original, "_tuneforge_fix", False):
        return

    def cleanup_full(self: Any, tune_controller: Any) -> None:
        for trial in self.current_trials():
            if trial.is_saving and trial.status != Trial.PAUSED:
                tune_controller.stop_trial(trial)
        original(self, tune_controller)

    cleanup_full._tuneforge_fix = True
    _Bracket.cleanup_full = cleanup_full


def _fail_trials_killed_for_memory() -> None:
    """Ray 2.60's ``RayActorManager._actor_task_failed`` handles a ``RayActorError`` (the actor
    died: a failed trial, retried up to ``max_failures``) and a ``RayTaskError``, and raises
    RuntimeError for anything else. When Ray's memory monitor kills a trial's worker, the task
    fails with ``OutOfMemoryError``, neither of the two, and the whole search died with it.
    Such a trial's actor is as dead as after any worker death: it is handed on as a
    ``RayActorError`` whose message says why, in one line (:func:`memory_kill_reason`)."""
    from ray.air.execution._internal.actor_manager import RayActorManager
    from ray.exceptions import OutOfMemoryError, RayActorError

    original = RayActorManager._actor_task_failed
    if getattr(original, "_tuneforge_fix", False):
        return

    def _actor_task_failed(self: Any, tracked_actor_task: Any, exception: Exception) -> None:
        if isinstance(exception, OutOfMemoryError):
            exception = RayActorError(error_msg=memory_kill_reason(str(exception)))
        original(self, tracked_actor_task, exception)

    _actor_task_failed._tuneforge_fix = True
    RayActorManager._actor_task_failed = _actor_task_failed


def memory_kill_reason(message: str) -> str:
    """One line from the message of Ray's ``OutOfMemoryError``: the node's usage against the
    memory monitor's threshold."""
    lines = message.strip().splitlines() or ["(no message)"]
    reasons = [line for line in lines if line.startswith("OOM kill reason:")]
    detail = reasons[0].removeprefix("OOM kill reason:").strip() if reasons else lines[0]
    return f"killed for memory by Ray's memory monitor: {detail}"
