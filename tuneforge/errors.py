"""The errors tuneforge raises on purpose.

Every message names the thing, the bad value, and the valid choices or the fix, on one line.
The CLI turns a :class:`ConfigError` into ``error: <message>`` and exit code 2; it is always
raised before anything (an MLflow run, a Ray results folder) has been created.
"""

from __future__ import annotations

__all__ = ["EXIT_INTERRUPTED", "EXIT_TERMINATED", "ConfigError", "StoreError", "TuneforgeError", "first_line"]

EXIT_INTERRUPTED = 130
"""A search stopped by Ctrl-C (SIGINT), its state saved to resume."""
EXIT_TERMINATED = 143
"""A search stopped by SIGTERM, or by the loss of its local Ray's GCS or raylet; saved to resume."""


class TuneforgeError(Exception):
    """Base class of the errors tuneforge raises on purpose."""


class ConfigError(TuneforgeError, ValueError):
    """Bad user input: a space file, a CLI option, a dataset, a cluster address or resources."""


class StoreError(TuneforgeError):
    """The MLflow store stopped taking a search's writes: the search was stopped, what Ray ran is
    in its results folder, and the message (one line) names the store, its error and the
    ``tuneforge resume`` command. The CLI exits with 1."""


def first_line(error: BaseException) -> str:
    """What a one-line message quotes of ``error``: the first line of its text, else its type's name."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
