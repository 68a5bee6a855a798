"""The errors tuneforge raises on purpose.

Every message names the thing, the bad value, and the valid choices or the fix, on one line.
The CLI turns a :class:`ConfigError` into ``error: <message>`` and exit code 2; it is always
raised before anything (an MLflow run, a Ray results folder) has been created.
"""

from __future__ import annotations

__all__ = ["ConfigError", "StoreError", "TuneforgeError"]


class TuneforgeError(Exception):
    """Base class of the errors tuneforge raises on purpose."""


class ConfigError(TuneforgeError, ValueError):
    """Bad user input: a space file, a CLI option, a dataset, a cluster address or resources."""


class StoreError(TuneforgeError):
    """The MLflow store stopped taking a search's writes: the search was stopped, what Ray ran is
    in its results folder, and the message (one line) names the store, its error and the
    ``tuneforge resume`` command. The CLI exits with 1."""
