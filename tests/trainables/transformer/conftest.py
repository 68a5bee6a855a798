"""Shared by the model unit tests of this family."""

from __future__ import annotations

from tests.trainables._torch_threads import _one_torch_thread  # noqa: F401 (an autouse fixture)
