"""Work-arounds for Ray bugs that tuneforge meets, each small, idempotent and named.

Installed by the runner before a search's Tuner starts; each says which Ray versions it was
seen in, so that it can go when Ray fixes its bug.
"""

from __future__ import annotations

from typing import Any

__all__ = ["install"]


def install() -> None:
    """Install every work-around (a second call changes nothing)."""
    _forget_tasks_of_cancelled_actors()


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
