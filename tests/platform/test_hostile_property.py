"""Generated space files and argument vectors, valid and hostile, through ``tuneforge search``.

The documents are mutations of bundled benchmark spaces (branin, hartmann3, rosenbrock4,
levy6-mixed): wrong types, bad or huge bounds, unhashable choices, unknown keys, duplicate keys,
weird unicode in names and text, bytes that are not UTF-8, deep nesting, alias bombs. The
argument vectors add good and bad flags (``--seed -3``, ``--trials abc``, ``--storage foo://``,
``--tracking-uri ''``, ...).

What is covered, honestly: each case runs in-process through the CLI's ``main``, as the console
script does, up to and including every check of a search: :func:`plan_search` (the space, the
flags, the algorithm's setup, the store and storage paths) and :func:`prepare_trials` (the
trainable's own checks). The runner's ``search`` is replaced by exactly those two calls, so a
valid case stops there and no Ray search is started: Ray's start, the cluster's resources and
MLflow's writes are not exercised here (tests/platform/test_runner.py and test_cli.py run real
searches). Output that goes through ``logging`` rather than stderr is not seen in-process; the
sample through the real console script below sees everything.

Property: every run ends with exit code 0 or 2; on 2, stderr is exactly one line ``error: ...``
and holds no traceback; nothing is created in the working folder either way; and a case built to
be hostile always exits 2.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.conftest import SHELL_VARIABLES
from tuneforge.platform import runner
from tuneforge.platform.cli import main
from tuneforge.platform.planning import plan_search, prepare_trials
from tuneforge.search_spaces import bundled_spaces
from tuneforge.search_spaces._yaml import MAX_DEPTH, MAX_NODES

BASES = {name: yaml.safe_load(bundled_spaces()[name].read_text())
         for name in ("branin", "hartmann3", "rosenbrock4", "levy6-mixed")}
PARAM_KINDS = ("float", "int")
"""The types any x_i of these spaces may take and stay valid (categorical needs choices)."""


@dataclass(frozen=True)
class Case:
    """A space file's bytes, and whether it was built to be refused (None: it may be valid)."""

    data: bytes
    hostile: bool | None = None


def _dump(document: Any) -> bytes:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True).encode()


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
anything = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)), max_leaves=6)
huge_numbers = st.one_of(st.integers(min_value=2**53 + 1, max_value=10**400),
                         st.floats(min_value=1.01e300, allow_infinity=False))


def _param(draw: Callable, document: dict) -> dict:
    return document["params"][draw(st.sampled_from(sorted(document["params"])))]


# -- mutations: each takes a document and returns a Case ------------------------------------------


def _unchanged(draw: Callable, document: dict) -> Case:
    return Case(_dump(document), hostile=False)


def _narrowed(draw: Callable, document: dict) -> Case:
    """A float param's range cut to a part of itself: still valid."""
    floats = [p for p in document["params"].values() if p["type"] == "float"]
    param = draw(st.sampled_from(floats))
    low, high = sorted(draw(st.lists(st.floats(param["low"], param["high"]), min_size=2, max_size=2,
                                     unique=True)))
    param.update(low=low, high=high)
    return Case(_dump(document), hostile=False)


def _wrong_type(draw: Callable, document: dict) -> Case:
    value = draw(anything)
    _param(draw, document)["type"] = value
    return Case(_dump(document), hostile=None if value in PARAM_KINDS else True)


def _any_bound(draw: Callable, document: dict) -> Case:
    _param(draw, document)[draw(st.sampled_from(["low", "high", "step", "grid", "log"]))] = draw(anything)
    return Case(_dump(document))


def _huge_bound(draw: Callable, document: dict) -> Case:
    value = draw(huge_numbers) * draw(st.sampled_from([1, -1]))
    _param(draw, document)[draw(st.sampled_from(["low", "high"]))] = value
    return Case(_dump(document), hostile=True)


def _choices(draw: Callable, document: dict) -> Case:
    name = draw(st.sampled_from(sorted(document["params"])))
    document["params"][name] = {"type": "categorical", "choices": draw(st.lists(anything, max_size=4))}
    return Case(_dump(document))


def _unknown_key(draw: Callable, document: dict) -> Case:
    where = draw(st.sampled_from(["top", "config", "param"]))
    target, known = {"top": (document, {"trainable", "metric", "mode", "config", "params", "description",
                                        "max_epochs", "grace_period"}),
                     "config": (document["config"], {"function"}),
                     "param": (_param(draw, document), {"type", "low", "high", "log", "step", "grid",
                                                        "choices"})}[where]
    key = draw(st.text(min_size=1, max_size=6).filter(lambda text: text not in known))
    target[key] = draw(scalars)
    return Case(_dump(document), hostile=True)


def _duplicate_key(draw: Callable, document: dict) -> Case:
    key = draw(st.sampled_from(sorted(document)))
    return Case(_dump(document) + _dump({key: draw(scalars)}), hostile=True)


def _renamed(draw: Callable, document: dict) -> Case:
    old = draw(st.sampled_from(sorted(document["params"])))
    new = draw(st.text(min_size=1, max_size=6))
    params = document["params"]
    document["params"] = {new if name == old else name: spec for name, spec in params.items()}
    return Case(_dump(document), hostile=new != old)


VALID_TOP_VALUES = {"metric": ("value", "regret"), "mode": ("max", "min"), "trainable": ("benchmark",)}


def _top_value(draw: Callable, document: dict) -> Case:
    """The metric, mode or trainable set to any text (never ``module:function``: a user's code)."""
    key = draw(st.sampled_from(sorted(VALID_TOP_VALUES)))
    document[key] = draw(st.text(max_size=8).filter(lambda text: ":" not in text))
    return Case(_dump(document), hostile=document[key] not in VALID_TOP_VALUES[key])


def _function(draw: Callable, document: dict) -> Case:
    value = draw(anything)
    same = value == document["config"]["function"]
    document["config"]["function"] = value
    return Case(_dump(document), hostile=not same)


def _bytes_inserted(draw: Callable, document: dict) -> Case:
    data = _dump(document)
    at = draw(st.integers(0, len(data)))
    data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return Case(data, hostile=True)
    return Case(data)


def _not_utf8(draw: Callable, document: dict) -> Case:
    data = _dump(document)
    at = draw(st.integers(0, len(data)))
    return Case(data[:at] + draw(st.sampled_from([b"\xff", b"\xc3(", b"\xe9", b"\xed\xa0\x80"])) + data[at:],
                hostile=True)


def _text_inserted(draw: Callable, document: dict) -> Case:
    data = _dump(document).decode()
    at = draw(st.integers(0, len(data)))
    return Case((data[:at] + draw(st.text(min_size=1, max_size=5)) + data[at:]).encode())


def _nested(draw: Callable, document: dict) -> Case:
    """The description as a list nested ``levels`` deep around one word: the document is then
    levels + 2 deep (the top mapping, the lists, the word)."""
    levels = draw(st.integers(1, 2 * MAX_DEPTH))
    value: Any = "deep"
    for _ in range(levels):
        value = [value]
    document["description"] = value
    return Case(_dump(document), hostile=levels + 2 > MAX_DEPTH)


def _bomb(draw: Callable, document: dict) -> Case:
    """A description holding a billion-laughs ladder ``levels`` high (aliases of aliases, each
    nine times): level k alone expands to 1 + 9 * (level k - 1) values."""
    levels = draw(st.integers(1, 9))
    ladder = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    ladder += [f"a{k}: &a{k} [{', '.join([f'*a{k - 1}'] * 9)}]" for k in range(1, levels)]
    del document["description"]
    text = _dump(document).decode() + "description:\n" + "".join(f"  {line}\n" for line in ladder)
    sizes = [10]
    for _ in range(1, levels):
        sizes.append(1 + 9 * sizes[-1])
    return Case(text.encode(), hostile=1 + levels + sum(sizes) > MAX_NODES)


VALID = [_unchanged, _narrowed]
MAY_BE_VALID = [_any_bound, _choices, _bytes_inserted, _text_inserted, _wrong_type, _renamed, _top_value,
                _function, _nested, _bomb]
REFUSED_BEFORE_RAY = [_huge_bound, _unknown_key, _duplicate_key, _not_utf8]
"""Always hostile, and refused by checks that need no Ray (the sample for the console script)."""


@st.composite
def space_files(draw: Callable, mutations: list[Callable] | None = None) -> Case:
    """A bundled benchmark space, as is (half the time, unless ``mutations`` are given) or
    mutated by one of ``mutations`` (default: all of them)."""
    document = copy.deepcopy(BASES[draw(st.sampled_from(sorted(BASES)))])
    if mutations is None:
        mutations = draw(st.sampled_from([VALID, MAY_BE_VALID + REFUSED_BEFORE_RAY]))
    return draw(st.sampled_from(mutations))(draw, document)


# -- argument vectors ----------------------------------------------------------------------------

whole = st.one_of(st.integers(-3, 40), st.integers(), st.text(max_size=4)).map(str)
real = st.one_of(st.floats(), st.integers(-2, 4), st.text(max_size=4)).map(str)
argv_text = st.text(st.characters(exclude_characters="\x00"), max_size=12)  # argv cannot hold NUL
FLAGS = st.one_of(
    st.tuples(st.just("--algo"), st.sampled_from(["random", "grid", "bayes", "optuna-tpe", "optuna-gp",
                                                  "annealing", ""])),
    st.tuples(st.sampled_from(["--trials", "--max-concurrent", "--grid-points", "--max-failures",
                               "--keep-checkpoints", "--workers-per-trial", "--max-epochs"]), whole),
    st.tuples(st.just("--seed"), st.integers(-2**33, 2**33).map(str)),
    st.tuples(st.sampled_from(["--cpus-per-trial", "--gpus-per-trial"]), real),
    st.tuples(st.just("--scheduler"), st.sampled_from(["none", "asha", "median", "pbt"])),
    st.tuples(st.just("--storage"), st.sampled_from(["", "foo://bar", "S3://b/p", "s3://", "/proc/x",
                                                     "/dev/null/x", "{tmp}/elsewhere"])),
    st.tuples(st.just("--tracking-uri"), st.sampled_from(["", "ftp://x", "sqlite:x.db", "sqlite:////proc/m.db",
                                                          "{tmp}/file-store", "sqlite:///{tmp}/other.db"])),
    st.tuples(st.sampled_from(["--experiment", "--register-model"]), argv_text),
    st.tuples(st.sampled_from(["--smoke", "--bogus", "--algo"])),
)


class _Planned(Exception):
    """Raised in place of a search: every check passed."""


def _check_only(space: Any, options: Any = None, *, trainable: Any = None, **ignored: Any) -> None:
    """The runner's ``search`` up to its first side effect: its two checking steps."""
    prepare_trials(plan_search(space, options, trainable=trainable))
    raise _Planned


def _run(folder: Path, case: Case, flags: list[tuple[str, ...]]) -> tuple[int, str]:
    """Exit code and stderr of ``tuneforge search`` on ``case`` in ``folder``, in-process."""
    (folder / "space.yaml").write_bytes(case.data)
    argv = ["search", "space.yaml", "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}",
            "--storage", str(folder / "ray_results")]
    argv += [part.replace("{tmp}", str(folder)) for flag in flags for part in flag]
    err, cwd = io.StringIO(), os.getcwd()
    os.chdir(folder)
    try:
        with mock.patch.object(runner, "search", _check_only), contextlib.redirect_stderr(err), \
                contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
    except _Planned:
        code = 0
    except SystemExit as exited:  # argparse's errors
        code = exited.code
    finally:
        os.chdir(cwd)
    return code, err.getvalue()


@settings(suppress_health_check=[HealthCheck.too_slow])  # examples: the profile (tests/conftest.py)
@given(case=space_files(), flags=st.one_of(st.just([]), st.lists(FLAGS, min_size=1, max_size=3)))
def test_every_input_is_searched_or_refused_in_one_line(case: Case, flags: list[tuple[str, ...]]) -> None:
    with tempfile.TemporaryDirectory(prefix="hostile-") as name:
        folder = Path(name)
        code, err = _run(folder, case, flags)
        event(f"exit {code}, built {'hostile' if case.hostile else 'as may be valid'}")
        assert code in (0, 2), err
        if code == 2:
            lines = err.splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert "Traceback" not in err
        assert sorted(p.name for p in folder.iterdir()) == ["space.yaml"], "nothing may be created"
        if case.hostile:
            assert code == 2, f"accepted a hostile space: {case.data!r}"


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=space_files(REFUSED_BEFORE_RAY))
def test_the_console_script_refuses_generated_hostile_spaces(case: Case) -> None:
    with tempfile.TemporaryDirectory(prefix="hostile-") as name:
        folder = Path(name)
        (folder / "space.yaml").write_bytes(case.data)
        done = subprocess.run(
            [str(Path(sys.executable).parent / "tuneforge"), "search", "space.yaml",
             "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}", "--storage", str(folder / "ray_results")],
            cwd=folder, capture_output=True, text=True, timeout=120,
            env={k: v for k, v in os.environ.items() if k not in SHELL_VARIABLES})
        lines = done.stderr.splitlines()
        assert done.returncode == 2, done.stderr
        assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
        assert sorted(p.name for p in folder.iterdir()) == ["space.yaml"]
