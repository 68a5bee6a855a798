"""Hostile input to ``tuneforge search`` (issue 9, "Bad input"): the regression table.

Every row is refused with exactly one stderr line ``error: ...`` that names the file, key or
flag, exit code 2, no traceback, and nothing created in the working folder (no MLflow store,
experiment or run, no Ray results folder). Rows run in-process through the CLI's ``main``;
a few also run through the real console script.

A row whose check needs no heavy import (the file, its YAML, names, bounds, flags, the store
and storage paths, a family's config keys) must be refused before Ray starts: for those rows
the test makes starting or joining Ray fail the test. The other rows (a scikit-learn
estimator's params, the dataset's rows and classes, a CSV's values) are the trainable's own
checks, which the runner makes while Ray starts; they join the session's local Ray.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import SHELL_VARIABLES
from tests.platform.test_cli import RIDGE
from tuneforge.platform import cluster
from tuneforge.platform.cli import main

BRANIN = """\
trainable: benchmark
metric: value
mode: min
config:
  function: branin
params:
  x1: {type: float, low: -5.0, high: 10.0}
  x2: {type: float, low: 0.0, high: 15.0}
"""

IRIS = """\
trainable: sklearn
metric: cv_accuracy
mode: max
config: {estimator: sklearn.linear_model.LogisticRegression, dataset: iris}
params:
  C: {type: float, low: 0.01, high: 10.0, log: true}
"""

CSV_SPACE = IRIS.replace("dataset: iris", "dataset: {path: data.csv, target: y}, cv: 3")
CSV_REGRESSION = RIDGE.replace("dataset: diabetes", "dataset: {path: data.csv, target: y}, cv: 3")
CSV_ROWS = "a,b,y\n" + "".join(f"{i},{i * 2},{i % 2}\n" for i in range(30))
TWELVE_ROWS = {"data.csv": "a,y\n" + "".join(f"{i},{int(i < 5)}\n" for i in range(12))}
"""12 rows, 5 of class 1."""


TSV_SPACE = """\
trainable: transformer
metric: wer
mode: min
config: {dataset: {tsv: pairs.tsv}, tokens: chars}
params:
  lr: {type: float, low: 1.0e-4, high: 1.0e-3, log: true}
"""


GAN_SPACE = """\
trainable: dcgan
metric: clf_fid
mode: min
config: {dataset: {npz: images.npz}}
params:
  lr: {type: float, low: 1.0e-4, high: 1.0e-3, log: true}
"""


DARTS_SPACE = """\
trainable: darts
metric: val_accuracy
mode: max
config: {dataset: digits, order: 3}
params:
  lr: {type: float, low: 0.01, high: 0.1, log: true}
"""

DARTS_NET_SPACE = """\
trainable: darts-net
metric: val_accuracy
mode: max
config: {dataset: digits, genotype: darts-v9}
params:
  lr: {type: float, low: 0.01, high: 0.1, log: true}
"""


def _npz(side: int) -> bytes:
    """An .npz of 40 grey ``side`` x ``side`` images of two classes."""
    buffer = io.BytesIO()
    np.savez(buffer, images=np.zeros((40, side, side), dtype=np.uint8), labels=np.arange(40) % 2)
    return buffer.getvalue()


def _branin(old: str, new: str) -> str:
    assert old in BRANIN, old
    return BRANIN.replace(old, new)


def _param(spec: str) -> str:
    """Branin with x2 given by ``spec``."""
    return _branin("x2: {type: float, low: 0.0, high: 15.0}", f"x2: {spec}")


def _ridge(setting: str) -> str:
    """The ridge space with one more config setting."""
    return RIDGE.replace("dataset: diabetes", f"dataset: diabetes, {setting}")


def _config(extra: str) -> str:
    """Branin with more text under ``config:``."""
    return _branin("  function: branin\n", f"  function: branin\n{extra}")


def _csv(old: str, new: str) -> dict[str, str]:
    assert old in CSV_ROWS, old
    return {"data.csv": CSV_ROWS.replace(old, new, 1)}


BILLION_LAUGHS = "".join(
    [f"  a0: &a0 [{', '.join(['lol'] * 9)}]\n"]
    + [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9)])
ALIAS_CHAIN = "".join(["  b0: &b0 [x]\n"] + [f"  b{i}: &b{i} [*b{i - 1}]\n" for i in range(1, 25)])
"""Each alias one level deeper than the last: shallow as written, 26 levels expanded."""


def row(row_id: str, space: str | bytes | None, *argv: str, message: str, files: dict[str, Any] | None = None,
        needs_ray: bool = False, marks: Any = ()) -> Any:
    """A row: the space file's text (None: no file), extra arguments, what the one line must
    contain ({tmp} is the working folder), other files to write first, and whether the check
    is the trainable's own (``needs_ray``)."""
    return pytest.param(space, argv, message, files or {}, needs_ray, id=row_id, marks=marks)


BIG = "1" + "0" * 400
"""1e400 written as an int: too large for a float."""
SHOWN_BIG = "10000000000000000000... (401 characters)"

ROWS = [
    # -- the file ----------------------------------------------------------------------------
    row("file not UTF-8 (latin-1)", BRANIN.encode() + "# café\n".encode("latin-1"),
        message="space.yaml: not UTF-8 text (byte 0xe9 at offset"),
    row("file in UTF-16", BRANIN.encode("utf-16"),
        message="space.yaml: not UTF-8 text (byte 0xff at offset 0)"),
    row("file missing", None, message="nope.yaml: no such space file or bundled space"),
    # -- type: -------------------------------------------------------------------------------
    row("type is a list", _param("{type: [float], low: 0.0, high: 1.0}"),
        message="space.yaml: params.x2: type: ['float'] is not one of ['categorical', 'float', 'int']"),
    row("type is a mapping", _param("{type: {kind: float}, low: 0.0, high: 1.0}"),
        message="params.x2: type: {'kind': 'float'} is not one of"),
    row("type is a number", _param("{type: 3, low: 0.0, high: 1.0}"),
        message="params.x2: type: 3 is not one of"),
    # -- choices -----------------------------------------------------------------------------
    row("choice is a list", _param("{type: categorical, choices: [[1, 2], 3]}"),
        message="params.x2: choices: [1, 2] is a list, not a scalar"),
    row("choice is a mapping", _param("{type: categorical, choices: [{a: 1}, 3]}"),
        message="params.x2: choices: {'a': 1} is a dict, not a scalar"),
    row("choice is a set", _param("{type: categorical, choices: [!!set {a: null}, 3]}"),
        message="params.x2: choices: {'a'} is a set, not a scalar"),
    # -- bounds ------------------------------------------------------------------------------
    row("float bound 1e400 written as an int", _param(f"{{type: float, low: 0, high: {BIG}}}"),
        message=f"params.x2: high: {SHOWN_BIG} is out of range; bounds and steps of this type lie "
                "within +-1e+300"),
    row("int bound 1e30", _param(f"{{type: int, low: 0, high: {10**30}}}"),
        message=f"params.x2: high: {10**30} is out of range; bounds and steps of this type lie within "
                "+-9007199254740992"),
    row("int bound 1e30 as a float", _param("{type: int, low: 0, high: 1.0e+30}"),
        message="params.x2: high: 1e+30 is out of range"),
    row("float bounds +-1.7e308", _param("{type: float, low: -1.7e+308, high: 1.7e+308}"),
        message="params.x2: low: -1.7e+308 is out of range; bounds and steps of this type lie within "
                "+-1e+300"),
    row("float bound 1.0e+400 (inf)", _param("{type: float, low: 0.0, high: 1.0e+400}"),
        message="params.x2: high: expected a finite number, got inf"),
    row("float step beyond the limit", _param(f"{{type: float, low: 0.0, high: 1.0, step: {BIG}}}"),
        message=f"params.x2: step: {SHOWN_BIG} is out of range"),
    row("grid value 1e400 written as an int", _param(f"{{type: float, low: 0.0, high: 1.0, grid: [{BIG}]}}"),
        message=f"params.x2: grid: {SHOWN_BIG} is outside the param's range"),
    row("integer of 5000 digits", _param("{type: int, low: 0, high: 1" + "0" * 5000 + "}"),
        message="space.yaml: invalid YAML (line 8): an integer of 5001 characters (at most 1000)"),
    row("date that is no date", BRANIN + "description: 2001-13-45\n",
        message="space.yaml: invalid YAML (line 9): cannot read '2001-13-45' as timestamp (month must be"),
    row("tagged int that is no int", _param("{type: int, low: !!int x, high: 3}"),
        message="space.yaml: invalid YAML (line 8): cannot read 'x' as int"),
    # -- YAML: duplicate keys, alias bombs, nesting --------------------------------------------
    row("duplicate top-level key", BRANIN + "mode: max\n",
        message="space.yaml: invalid YAML (line 9): duplicate key 'mode'"),
    row("duplicate param", _branin("  x2:", "  x1: {type: float, low: 0.0, high: 1.0}\n  x2:"),
        message="space.yaml: invalid YAML (line 8): duplicate key 'x1'"),
    row("duplicate key in a param", _param("{type: float, low: 0.0, high: 15.0, low: 1.0}"),
        message="space.yaml: invalid YAML (line 8): duplicate key 'low'"),
    row("duplicate config key", _config("  function: hartmann3\n"),
        message="space.yaml: invalid YAML (line 6): duplicate key 'function'"),
    row("billion laughs", "anchors:\n" + BILLION_LAUGHS + BRANIN,
        message="space.yaml: invalid YAML (line 7): more than 100000 values once its aliases are expanded"),
    row("nested 30 deep", _config("  deep: " + "[" * 30 + "]" * 30 + "\n"),
        message="space.yaml: invalid YAML (line 6): nested deeper than 20 levels"),
    row("nested 26 deep through aliases", "anchors:\n" + ALIAS_CHAIN + BRANIN,
        message="invalid YAML (line 21): nested deeper than 20 levels once its aliases are expanded"),
    row("alias inside its own anchor", _config("  loop: &loop [*loop]\n"),
        message="invalid YAML (line 6): an alias refers to a collection that contains it"),
    # -- names -------------------------------------------------------------------------------
    row("param name with a newline", _branin("  x2:", '  "x\\n2":'),
        message="space.yaml: params: 'x\\n2' is not a name; names are text on one line"),
    row("config key that is a number", _config("  7: seven\n"),
        message="space.yaml: config: 7 is not a name"),
    row("param name that is a path out", _branin("  x2:", '  "../x2":'),
        message="space.yaml: params: '../x2' is not a name MLflow can log"),
    row("metric MLflow cannot log", _branin("metric: value", "metric: value?"),
        message="space.yaml: metric: 'value?' is not a name MLflow can log"),
    # -- scoring -----------------------------------------------------------------------------
    row("scoring is a number", _ridge("scoring: 3"),
        message="config.scoring: expected a scikit-learn scorer name or a list of them"),
    row("scoring list holds a number", _ridge("scoring: [r2, 3]"),
        message="config.scoring: expected a scikit-learn scorer name or a list of them (accuracy, "
                "[accuracy, f1_macro]), got ['r2', 3]"),
    row("scoring is a mapping", _ridge("scoring: {r2: 1}"),
        message="config.scoring: expected a scikit-learn scorer name"),
    row("scoring names no scorer", _ridge("scoring: [r2, nope]"),
        message="scoring: 'nope' is not a scikit-learn scorer", needs_ray=True),
    # -- the benchmark family ------------------------------------------------------------------
    row("function is a list", _branin("function: branin", "function: [branin]"),
        message="config.function: ['branin'] is not a benchmark function; valid: branin,"),
    row("function is a number", _branin("function: branin", "function: 3"),
        message="config.function: 3 is not a benchmark function"),
    row("function missing", _branin("config:\n  function: branin\n", "config: {}\n"),
        message="config.function: None is not a benchmark function"),
    row("choices that are not numbers", _param("{type: categorical, choices: [a, b]}"),
        message="params.x2: choices: 'a' is not a number; a benchmark function takes numbers only"),
    row("choices that are booleans", _param("{type: categorical, choices: [true, false]}"),
        message="params.x2: choices: True is not a number"),
    # -- unknown keys --------------------------------------------------------------------------
    row("unknown benchmark setting", _config("  colour: red\n"),
        message="config.colour: not a setting of trainable 'benchmark'; valid: function"),
    row("unknown top-level key", BRANIN + "budget: 3\n",
        message="space.yaml: unknown key 'budget'; valid keys:"),
    row("unknown key in a param", _param("{type: float, low: 0.0, high: 15.0, scale: 2}"),
        message="params.x2: unknown key 'scale'; valid keys:"),
    row("unknown scikit-learn setting", _ridge("colour: red"),
        message="'colour' is not a parameter of Ridge; valid: alpha,", needs_ray=True),
    # -- folds -------------------------------------------------------------------------------
    row("cv above the rows of a bundled dataset", _ridge("cv: 1000"), needs_ray=True,
        message="config.cv: 1000 folds, but the dataset has 442 rows; use at most 442"),
    row("cv above the smallest class of a bundled dataset", IRIS.replace("iris}", "iris, cv: 60}"),
        needs_ray=True,
        message="config.cv: 60 folds, but class 0 of the dataset has 50 rows; use at most 50"),
    row("cv above the rows of a CSV", CSV_REGRESSION.replace("cv: 3", "cv: 20"), files=TWELVE_ROWS,
        message="config.cv: 20 folds, but the dataset has 12 rows", needs_ray=True),
    row("cv above the smallest class of a CSV", CSV_SPACE.replace("cv: 3", "cv: 6"), files=TWELVE_ROWS,
        message="config.cv: 6 folds, but class 1 of the dataset has 5 rows; use at most 5", needs_ray=True),
    row("cv is not a number", _ridge("cv: many"),
        message="config.cv: expected an integer number of folds >= 2, got 'many'"),
    # -- CSV values --------------------------------------------------------------------------
    row("CSV with a missing target", CSV_SPACE, files=_csv("3,6,1\n", "3,6,\n"), needs_ray=True,
        message="config.dataset.target: column 'y' of {tmp}/data.csv has no finite value in data row 4"),
    row("CSV with NaN as the target", CSV_SPACE, files=_csv("3,6,1\n", "3,6,NaN\n"), needs_ray=True,
        message="column 'y' of {tmp}/data.csv has no finite value in data row 4"),
    row("CSV with an infinite feature", CSV_SPACE, files=_csv("3,6,1\n", "inf,6,1\n"), needs_ray=True,
        message="config.dataset: {tmp}/data.csv has an infinite value in feature column 'a' (data row 4)"),
    row("CSV with a negative infinite feature", CSV_SPACE, files=_csv("3,6,1\n", "3,-inf,1\n"),
        message="has an infinite value in feature column 'b'", needs_ray=True),
    # -- sequence pairs (the transformer's TSV) ------------------------------------------------
    row("TSV missing", TSV_SPACE, needs_ray=True,
        message="config.dataset.tsv: {tmp}/pairs.tsv does not exist"),
    row("TSV line with three columns", TSV_SPACE, files={"pairs.tsv": "ab\tba\ncd\tdc\tx\n"},
        needs_ray=True, message="config.dataset.tsv: line 2 has 3 tab-separated columns"),
    row("TSV line with an empty target", TSV_SPACE, files={"pairs.tsv": "ab\tba\ncd\t\n"}, needs_ray=True,
        message="config.dataset.tsv: line 2 has an empty target"),
    row("TSV line longer than max_len", TSV_SPACE.replace("tokens: chars", "tokens: chars, max_len: 4"),
        files={"pairs.tsv": "ab\tba\nabcde\tedcba\n"}, needs_ray=True,
        message="config.dataset.tsv: line 2's source has 5 tokens"),
    # -- GANs ----------------------------------------------------------------------------------
    row("GAN on images of an odd side", GAN_SPACE, files={"images.npz": _npz(7)}, needs_ray=True,
        message="image_size: 7 is not allowed; a GAN needs an even side of at least 8"),
    row("GAN with beta1 of 1", GAN_SPACE.replace("{npz: images.npz}", "mnist, beta1: 1.0"), needs_ray=True,
        message="beta1: 1.0 is not allowed; it must satisfy 0 <= beta1 < 1"),
    row("WGAN-GP with a searched n_critic of 0", GAN_SPACE.replace("dcgan", "wgan-gp").replace(
        "{npz: images.npz}", "mnist") + "  n_critic: {type: categorical, choices: [5, 0]}\n", needs_ray=True,
        message="n_critic: 0 is not allowed; it must be a positive integer"),
    # -- DARTS ---------------------------------------------------------------------------------
    row("DARTS with a third-order architecture step", DARTS_SPACE, needs_ray=True,
        message="order: 3 is not allowed; it must be 1 or 2"),
    row("darts-net with an unknown genotype name", DARTS_NET_SPACE, needs_ray=True,
        message="genotype: unknown genotype 'darts-v9'; valid: darts-v1, darts-v2, or a genotype mapping"),
    # -- --seed ------------------------------------------------------------------------------
    row("seed below 0", BRANIN, "--seed=-1", message="--seed: expected 0 to 2**32 - 1 (4294967295), got -1"),
    row("seed 2**32 with bayes", BRANIN, "--seed", str(2**32), "--algo", "bayes",
        message="--seed: expected 0 to 2**32 - 1 (4294967295), got 4294967296"),
    row("seed 2**40", BRANIN, "--seed", str(2**40), message="--seed: expected 0 to 2**32 - 1"),
    # -- --tracking-uri ------------------------------------------------------------------------
    row("tracking scheme ftp", BRANIN, "--tracking-uri", "ftp://host/store",
        message="--tracking-uri: unsupported scheme 'ftp'"),
    row("tracking URI empty", BRANIN, "--tracking-uri", "",
        message="--tracking-uri: expected a value, got an empty one"),
    row("sqlite folder missing in /proc", BRANIN, "--tracking-uri", "sqlite:////proc/x/mlflow.db",
        message="--tracking-uri: folder /proc/x of the SQLite store does not exist"),
    row("sqlite file in /proc", BRANIN, "--tracking-uri", "sqlite:////proc/mlflow.db",
        message="--tracking-uri: cannot write in /proc"),
    row("sqlite file in /sys", BRANIN, "--tracking-uri", "sqlite:////sys/mlflow.db",
        message="--tracking-uri: cannot write in /sys (Permission denied)"),
    row("sqlite path is a folder", BRANIN, "--tracking-uri", "sqlite:///{tmp}/folder",
        files={"folder/": None}, message="--tracking-uri: {tmp}/folder is a folder, not a file"),
    row("sqlite URI without a path", BRANIN, "--tracking-uri", "sqlite:mlflow.db",
        message="--tracking-uri: 'sqlite:mlflow.db' names no database file"),
    row("tracking mysql without its driver", BRANIN, "--tracking-uri", "mysql://user:pw@127.0.0.1/runs",
        message="--tracking-uri: MySQL needs its Python driver, which is not installed (No module named "
                "'MySQLdb'); pip install pymysql and use mysql+pymysql://..."),
    row("tracking databricks without a workspace", BRANIN, "--tracking-uri", "databricks",
        message="--tracking-uri: databricks names no workspace: set DATABRICKS_HOST and DATABRICKS_TOKEN"),
    # -- --storage ---------------------------------------------------------------------------
    row("storage bucket unreachable", BRANIN, "--storage", "s3://tuneforge-no-such-bucket/runs",
        message="--storage: cannot reach s3://tuneforge-no-such-bucket/runs: "),
    row("storage in /proc", BRANIN, "--storage", "/proc/x", message="--storage: cannot write in /proc"),
    row("storage under /dev/null", BRANIN, "--storage", "/dev/null/x",
        message="--storage: cannot create /dev/null/x: /dev/null is not a folder"),
    row("storage is a file", BRANIN, "--storage", "{tmp}/taken", files={"taken": "x"},
        message="--storage: {tmp}/taken is not a folder"),
    row("storage scheme foo", BRANIN, "--storage", "foo://bar",
        message="--storage: Ray Tune cannot open 'foo' URIs; use a folder or one of file://, s3://"),
    row("storage scheme S3 in capitals", BRANIN, "--storage", "S3://bucket/path",
        message="--storage: Ray Tune cannot open 'S3' URIs"),
    row("storage file URI in /proc", BRANIN, "--storage", "file:///proc/x",
        message="--storage: cannot write in /proc"),
    row("storage empty", BRANIN, "--storage", "", message="--storage: expected a value, got an empty one"),
    # -- other flags -------------------------------------------------------------------------
    row("experiment empty", BRANIN, "--experiment", " ", message="--experiment: expected a value"),
    row("experiment name too long", BRANIN, "--experiment", "e" * 501,
        message="--experiment: 501 characters; MLflow takes at most 500"),
    row("cpus per trial infinite", BRANIN, "--cpus-per-trial", "inf",
        message="--cpus-per-trial: expected a positive number, got inf"),
    row("gpus per trial NaN", BRANIN, "--gpus-per-trial", "nan",
        message="--gpus-per-trial: expected 0 or more, got nan"),
    row("grid points 10^9", BRANIN, "--algo", "grid", "--grid-points", "1000000000",
        message="--grid-points: expected 2 to 10000, got 1000000000"),
    row("optuna-gp on 2**53 ints", RIDGE + f"  max_iter: {{type: int, low: 1, high: {2**53}}}\n",
        "--algo", "optuna-gp", message="--algo optuna-gp: params.max_iter has 9007199254740992 values"),
    # -- argparse ----------------------------------------------------------------------------
    row("trials abc", BRANIN, "--trials", "abc",
        message="error: tuneforge search: argument --trials: invalid int value: 'abc'"),
    row("seed abc", BRANIN, "--seed", "abc", message="argument --seed: invalid int value: 'abc'"),
    row("cpus per trial abc", BRANIN, "--cpus-per-trial", "abc",
        message="argument --cpus-per-trial: invalid float value: 'abc'"),
    row("unknown flag", BRANIN, "--frobnicate",
        message="error: tuneforge search: unrecognized arguments: --frobnicate (see tuneforge search "
                "--help)"),
    row("flag without its value", BRANIN, "--algo", message="argument --algo: expected one argument"),
]


def _write_files(folder: Path, space: str | bytes | None, files: dict[str, Any]) -> None:
    if space is not None:
        (folder / "space.yaml").write_bytes(space if isinstance(space, bytes) else space.encode())
    for name, text in files.items():
        if name.endswith("/"):
            (folder / name).mkdir()
            if name.startswith("read-only"):
                (folder / name).chmod(0o555)
        elif isinstance(text, bytes):
            (folder / name).write_bytes(text)
        else:
            (folder / name).write_text(text)


def _argv(folder: Path, space: str | bytes | None, extra: tuple[str, ...]) -> list[str]:
    """``search FILE EXTRA...``, with the store and the results folder in ``folder`` unless the
    row gives its own."""
    extra = [arg.replace("{tmp}", str(folder)) for arg in extra]
    argv = ["search", "space.yaml" if space is not None else "nope.yaml"]
    if "--tracking-uri" not in extra:
        argv += ["--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}"]
    if "--storage" not in extra:
        argv += ["--storage", str(folder / "ray_results")]
    return [*argv, *extra]


def _everything(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


def _no_ray(*args: Any, **kwargs: Any) -> bool:
    pytest.fail("Ray was started (or joined) for input that needs no heavy import to refuse")


def _run_main(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exited:  # argparse's errors
        return exited.code


@pytest.mark.parametrize(("space", "extra", "message", "files", "needs_ray"), ROWS)
def test_hostile_input_is_one_line_exit_2_and_nothing_created(
        space, extra, message, files, needs_ray, tmp_path, monkeypatch, capsys, request) -> None:
    _write_files(tmp_path, space, files)
    before = _everything(tmp_path)
    monkeypatch.chdir(tmp_path)
    if needs_ray:
        request.getfixturevalue("ray_local")
        capsys.readouterr()  # Ray's own lines, when this row is the first to start it
    else:
        monkeypatch.setattr(cluster, "_connect", _no_ray)
    code = _run_main(_argv(tmp_path, space, extra))
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert message.replace("{tmp}", str(tmp_path)) in lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert _everything(tmp_path) == before, "nothing may be created"


def test_every_row_has_its_own_name() -> None:
    ids = [param.id for param in ROWS]
    assert len(ids) == len(set(ids)) >= 40


_ENVIRONMENT = SHELL_VARIABLES
SUBPROCESS_SAMPLE = ["file not UTF-8 (latin-1)", "duplicate top-level key", "seed 2**32 with bayes",
                     "sqlite file in /proc", "storage scheme foo", "storage bucket unreachable"]


@pytest.mark.parametrize("row_id", SUBPROCESS_SAMPLE)
def test_the_console_script_refuses_a_sample_of_the_rows(row_id: str, tmp_path: Path) -> None:
    [param] = [param for param in ROWS if param.id == row_id]
    space, extra, message, files, _ = param.values
    _write_files(tmp_path, space, files)
    before = _everything(tmp_path)
    done = subprocess.run([str(Path(sys.executable).parent / "tuneforge"), *_argv(tmp_path, space, extra)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k not in _ENVIRONMENT})
    lines = done.stderr.splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done.stderr
    assert _everything(tmp_path) == before
