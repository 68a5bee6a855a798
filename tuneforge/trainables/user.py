"""Users' own trainables: a plain function of ``config`` named in a space, or passed from Python.

A space names one as ``trainable: my_module:train_fn`` (an importable module) or
``trainable: path/to/file.py:train_fn`` (relative to the space file). The function reads its
``config`` and reports through :func:`tuneforge.trainables.report` (or ``ray.tune.report``)
with the space's metric at least once; a trial that never does fails with that message, and
the search goes on.

Workers on other nodes need the code: a file's module is pickled by value (Ray's cloudpickle
then ships the function's code itself, not a reference to a file the worker lacks), and the
runner ships the file's folder as the job's ``working_dir`` when it starts or joins Ray, so that
modules beside it import on every node.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError
from tuneforge.search_spaces import SearchSpace
from tuneforge.trainables._base import Trainable

__all__ = ["check_reported", "user_trainable"]


def user_trainable(reference: str | Callable[[dict[str, Any]], None],
                   base_dir: Path | None = None) -> Trainable:
    """The Trainable of a user's function, given as ``module:function``, ``file.py:function``
    (relative to ``base_dir``) or the function itself. ConfigError, at once, when the module or
    file cannot be imported, or the name is missing or not callable."""
    if callable(reference):
        function, name, code_dir = reference, _qualified_name(reference), None
    else:
        function, code_dir = _resolve(reference, base_dir or Path.cwd())
        name = reference
    return Trainable(name=name, function=function, prepare=lambda space: dict(space.config),
                     metrics=None, reuse_actors=False, iterative=None, code_dir=code_dir)


def _qualified_name(function: Callable[..., Any]) -> str:
    return f"{getattr(function, '__module__', '?')}:{getattr(function, '__qualname__', repr(function))}"


def _resolve(reference: str, base_dir: Path) -> tuple[Callable[[dict[str, Any]], None], Path | None]:
    where, _, attribute = reference.rpartition(":")
    if not where or not attribute:
        raise ConfigError(f"trainable: {reference!r} is not module:function or path/file.py:function")
    if where.endswith(".py"):
        path = Path(where).expanduser()
        module = _import_file(path if path.is_absolute() else base_dir / path)
        code_dir = Path(module.__file__).parent
    else:
        module, code_dir = _import_module(where), None
    function = getattr(module, attribute, None)
    if function is None:
        raise ConfigError(f"trainable: {where} has no {attribute!r}; it defines: "
                          f"{', '.join(n for n in dir(module) if not n.startswith('_')) or 'nothing'}")
    if not callable(function):
        raise ConfigError(f"trainable: {where}:{attribute} is a {type(function).__name__}, not a function")
    return function, code_dir


def _import_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except Exception as exc:  # the user's module may fail in any way while importing
        raise ConfigError(f"trainable: cannot import module {name!r}: {_one_line(exc)}") from None


def _import_file(path: Path) -> Any:
    """Import ``path`` as the module named after its file (as Python would from its folder),
    registered to be pickled by value so that Ray workers need not have the file."""
    from tuneforge.trainables._session import ship_by_value

    path = path.resolve()
    if not path.is_file():
        raise ConfigError(f"trainable: file {path} does not exist")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's file may fail in any way while importing
        del sys.modules[path.stem]
        raise ConfigError(f"trainable: cannot import {path}: {_one_line(exc)}") from None
    ship_by_value(module)
    return module


def _one_line(exc: BaseException) -> str:
    """``Type: message``, the message's first line only: the error is one line."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def check_reported(space: SearchSpace, reported: set[str]) -> str | None:
    """The error of a user trial that ended without ever reporting the space's metric."""
    if space.metric in reported:
        return None
    return (f"trainable never reported the space's metric {space.metric!r} "
            f"(it reported: {', '.join(sorted(reported)) or 'nothing'})")
