"""The ``tuneforge`` command: listings, an interrupted search, and one clear line for every bad
input. (A whole search through the console script, its progress and summary: test_ray_token.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import USER_SPACE, write_space
from tuneforge.platform.cli import main

RIDGE = """\
trainable: sklearn
metric: cv_r2
mode: max
config: {estimator: sklearn.linear_model.Ridge, dataset: diabetes}
params:
  alpha: {type: float, low: 0.01, high: 10.0, log: true}
"""


def tuneforge(*args: str, cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """Run the installed console script as a user would."""
    return subprocess.run([str(Path(sys.executable).parent / "tuneforge"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env})


def test_spaces_lists_every_bundled_space(capsys) -> None:
    assert main(["spaces"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) >= 4
    [rf_digits] = [line for line in lines if line.startswith("rf-digits")]
    assert "cv_accuracy" in rf_digits and "4 params" in rf_digits


def test_show_prints_the_parsed_space_and_its_grid_size(capsys) -> None:
    assert main(["show", "svc-wine", "--grid-points", "3"]) == 0
    out = capsys.readouterr().out
    assert "svc__C" in out and "float [0.001, 1000] log" in out
    assert "grid size (--grid-points 3): 18" in out


VIT = """\
trainable: vit
metric: val_accuracy
mode: max
config: {dataset: digits, epochs: 2, width: 16, depth: 1}
params:
  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
"""


def _vit(old: str, new: str) -> str:
    assert old in VIT, old
    return VIT.replace(old, new)


def _ridge(old: str, new: str) -> str:
    assert old in RIDGE, old
    return RIDGE.replace(old, new)


HUGE_GRID = _ridge("log: true}", "log: true}\n  max_iter: {type: int, low: 1, high: 100000}\n"
                                 "  tol: {type: float, low: 0.1, high: 0.2}")

BAD_INPUTS = {  # name: (space file text, or None for no file; extra arguments; message)
    "missing space file": (None, [], "nope.yaml: no such space file or bundled space"),
    "invalid yaml": ("params: [oops", [], "invalid YAML"),
    "unknown trainable": (_ridge("trainable: sklearn", "trainable: xgboost"), [],
                          "unknown trainable 'xgboost'; valid: benchmark, cgan, darts, darts-net, dcgan, "
                          "sklearn, transformer, vit, wgan-gp, or your own"),
    "metric not reported": (_ridge("metric: cv_r2", "metric: accuracy"), [],
                            "metric: 'accuracy' is not reported by trainable 'sklearn'"),
    "missing dataset": (_ridge("dataset: diabetes", "dataset: {path: no.csv, target: y}"), [],
                        "no.csv does not exist"),
    "grid too large": (HUGE_GRID, ["--algo", "grid", "--grid-points", "200"],
                       "nope.yaml: the grid has 8000000 trials"),
    "unknown algo": (RIDGE, ["--algo", "annealing"], "--algo: unknown algorithm 'annealing'"),
    "zero trials": (RIDGE, ["--trials", "0"], "--trials: expected at least 1, got 0"),
    "bad tracking uri": (RIDGE, ["--tracking-uri", "ftp://x"], "unsupported scheme 'ftp'"),
    "smoke on a one-step family": (RIDGE, ["--smoke"], "--smoke: trainable 'sklearn' runs one step a trial"),
    "storage URI without a bucket": (RIDGE, ["--storage", "s3://"], "--storage: 's3://' names no bucket"),
    "missing image folder": (_vit("dataset: digits", "dataset: {folder: no-images}"), [],
                             "no-images does not exist"),
    "unknown ViT setting": (_vit("depth: 1", "depth: 1, colour: red"), [],
                            "'colour' is not a setting of trainable 'vit'; valid: batch_size, compile, "
                            "dataset,"),
    "patch that does not divide the image": (
        _vit("log: true}", "log: true}\n  patch_size: {type: categorical, choices: [2, 3]}"), [],
        "patch_size: 3 does not divide image_size 8; choose one of 1, 2, 4, 8"),
    "trainable file missing": (USER_SPACE.format(reference="nowhere.py:train"), [],
                               "nowhere.py does not exist"),
    "trainable module missing": (USER_SPACE.format(reference="no_such_module:train"), [],
                                 "cannot import module 'no_such_module'"),
    "trainable not callable": (USER_SPACE.format(reference="mine.py:not_a_function"), [],
                               "mine.py:not_a_function is a int, not a function"),
    "trainable name missing": (USER_SPACE.format(reference="mine.py:nope"), [], "has no 'nope'; it defines:"),
    "unknown scheduler": (VIT, ["--scheduler", "pbt"],
                          "--scheduler: unknown scheduler 'pbt'; valid: none, asha, hyperband, median"),
    "grace period past the last epoch": (VIT, ["--scheduler", "asha", "--grace-period", "3"],
                                         "grace_period 3 is more than max_epochs 2"),
    "grace period in the space past max_epochs": (VIT + "max_epochs: 2\ngrace_period: 5\n",
                                                  ["--scheduler", "median"],
                                                  "grace_period 5 is more than max_epochs 2"),
    "zero max epochs": (VIT, ["--scheduler", "asha", "--max-epochs", "0"],
                        "--max-epochs: expected at least 1"),
    "bad max_epochs in the space": (VIT + "max_epochs: many\n", [], "max_epochs: expected a whole number"),
    "scheduler of a one-step family": (RIDGE, ["--scheduler", "asha"],
                                       "--scheduler asha: trainable 'sklearn' reports once a trial"),
    "scheduler without a length": (USER_SPACE.format(reference="mine.py:train"), ["--scheduler", "hyperband"],
                                   "says nothing of how long a trial runs; give --max-epochs"),
    "zero workers per trial": (VIT, ["--workers-per-trial", "0"],
                               "--workers-per-trial: expected at least 1, got 0"),
    "workers for a one-process family": (RIDGE, ["--workers-per-trial", "2"],
                                         "--workers-per-trial 2: trainable 'sklearn' runs each trial "
                                         "in one process"),
    "missing cluster config": (RIDGE, ["--cluster-config", "no-cluster.yaml"], "no-cluster.yaml"),
}


@pytest.mark.parametrize(("text", "extra", "message"), BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_one_line_exit_2_and_nothing_created(
        text, extra, message, tmp_path, monkeypatch, capsys) -> None:
    if text is not None:
        write_space(tmp_path, text, "nope.yaml")
        write_space(tmp_path, "not_a_function = 3\ndef train(config):\n    pass\n", "mine.py")
    before = set(tmp_path.iterdir())
    monkeypatch.chdir(tmp_path)
    assert main(["search", "nope.yaml", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert set(tmp_path.iterdir()) == before, "nothing may be created"


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--cpus-per-trial", "64", "--cpus-per-trial 64 --gpus-per-trial 0: no node of the Ray cluster"),
    ("--gpus-per-trial", "3", "--cpus-per-trial 1 --gpus-per-trial 3: no node"),
])
def test_impossible_resources_are_refused_before_anything_is_created(
        ray_local, tmp_path, monkeypatch, capsys, flag, value, message) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["search", "ridge-diabetes", flag, value]) == 2
    err = capsys.readouterr().err
    assert message in err and "largest: 2 CPUs, 2 GPUs" in err
    assert list(tmp_path.iterdir()) == []


BEFORE_RAY = {  # name: (space file text, extra arguments, message)
    "missing dataset": (_ridge("dataset: diabetes", "dataset: {path: no.csv, target: y}"), [],
                        "no.csv does not exist"),
    "missing image folder": (_vit("dataset: digits", "dataset: {folder: no-images}"), [],
                             "no-images does not exist"),
    "metric not reported": (_ridge("metric: cv_r2", "metric: accuracy"), [],
                            "metric: 'accuracy' is not reported by trainable 'sklearn'"),
    "more GPUs than the machine has": (RIDGE, ["--gpus-per-trial", "64"],
                                       "--cpus-per-trial 1 --gpus-per-trial 64: this machine has "),
    "more CPUs than the machine has": (RIDGE, ["--cpus-per-trial", "64"],
                                       "--cpus-per-trial 64 --gpus-per-trial 0: this machine has "),
}


@pytest.mark.parametrize(("text", "extra", "message"), BEFORE_RAY.values(), ids=BEFORE_RAY.keys())
def test_a_refusal_comes_before_ray_starts(tmp_path: Path, text: str, extra: list[str], message: str) -> None:
    """The console script, a process of its own: Ray would start in it, after the checks."""
    write_space(tmp_path, text, "nope.yaml")
    done = tuneforge("search", "nope.yaml", *extra, cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert "checking trainable" in done.stdout and "starting a local Ray" not in done.stdout, done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nope.yaml"], "nothing may be created"


def test_the_console_script_exits_2_without_a_traceback(tmp_path: Path) -> None:
    done = tuneforge("search", "nope.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: nope.yaml") and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_unreachable_address_fails_fast_with_one_line(tmp_path: Path) -> None:
    # The subprocess timeout only guards against a hang; Ray's own retries would take minutes.
    done = tuneforge("search", "ridge-diabetes", "--address", "127.0.0.1:1", cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("error: --address: cannot reach a Ray cluster at 127.0.0.1:1")
    assert list(tmp_path.iterdir()) == []


SLOW = """\
trainable: sklearn
metric: cv_accuracy
mode: max
config: {estimator: sklearn.ensemble.RandomForestClassifier, dataset: digits, cv: 5}
params:
  n_estimators: {type: int, low: 150, high: 200}
"""


@pytest.mark.own_ray  # the search is a driver process of its own, with its own Ray
def test_an_interrupted_search_keeps_every_finished_trial(tmp_path: Path) -> None:
    space = write_space(tmp_path, SLOW)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    process = subprocess.Popen([str(Path(sys.executable).parent / "tuneforge"), "search", str(space),
                                "--trials", "40", "--tracking-uri", store], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("[ 3/40]"):
            break
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=180)
    lines.append(out)
    assert process.returncode == 130, "".join(lines) + err
    n_reported = sum(line.startswith("[") for line in "".join(lines).splitlines())
    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("space").experiment_id])
    [parent] = [r for r in runs if r.data.tags.get("tuneforge.role") == "search"]
    finished = [r for r in runs if r.info.status == "FINISHED" and r is not parent]
    assert parent.info.status == "KILLED"
    assert len(finished) >= 3 and len(finished) >= n_reported - 2
    assert all("cv_accuracy" in r.data.metrics for r in finished)
    assert all(r.info.status in ("FINISHED", "KILLED") for r in runs)
    assert parent.data.metrics["n_trials_finished"] == len(finished)
    # The results table is written even when interrupted.
    assert "results.csv" in {a.path for a in client.list_artifacts(parent.info.run_id)}


@pytest.mark.parametrize(("argv", "message"), [
    (["search", "rf-digits", "--trials", "abc"],
     "error: tuneforge search: argument --trials: invalid int value: 'abc' (see tuneforge search --help)\n"),
    (["search"], "error: tuneforge search: the following arguments are required: space"),
    (["frobnicate"], "error: tuneforge: argument command: invalid choice: 'frobnicate'"),
])
def test_argument_errors_are_one_line_and_exit_2(argv, message, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.startswith(message) and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_show_says_when_a_space_that_searches_epochs_may_be_stopped(capsys) -> None:
    assert main(["show", "vit-mnist"]) == 0
    out = capsys.readouterr().out
    assert "param epochs        int   [8, 24]" in out
    assert "epochs:    8-24, searched; asha may stop a trial after 25% of its epochs" in out
    assert "start_from: 1 point(s), after the family's default config" in out


DID_YOU_MEAN = {  # name: (arguments, the end of the one line)
    "bundled space": (["search", "rf-digit"], "; did you mean 'rf-digits'?"),
    "space file without .yaml": (["search", "nope"], "; did you mean 'nope.yaml'?"),
    "flag": (["search", "nope.yaml", "--trails", "3"],
             "unrecognized arguments: --trails 3; did you mean '--trials'? (see tuneforge search --help)"),
    "flag of another command": (["runs", "--tracking-url", "x"],
                                "did you mean '--tracking-uri'? (see tuneforge runs --help)"),
    "algorithm": (["search", "nope.yaml", "--algo", "bayse"], "; did you mean 'bayes'?"),
    "scheduler": (["search", "nope.yaml", "--scheduler", "ash"], "; did you mean 'asha'?"),
}


@pytest.mark.parametrize(("argv", "ending"), DID_YOU_MEAN.values(), ids=DID_YOU_MEAN.keys())
def test_a_near_miss_is_refused_with_the_closest_name(argv, ending, tmp_path, monkeypatch, capsys) -> None:
    write_space(tmp_path, RIDGE, "nope.yaml")
    monkeypatch.chdir(tmp_path)
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own refusals exit from inside the parser
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert err.rstrip("\n").endswith(ending), err


def test_no_suggestion_where_nothing_is_close(capsys) -> None:
    assert main(["search", "zzzzqqq"]) == 2
    assert "did you mean" not in capsys.readouterr().err


def test_every_command_has_a_description_and_an_example() -> None:
    from tuneforge.platform.cli import _parser

    parser = _parser()
    commands = dict(parser.commands.choices)
    darts = commands.pop("darts")
    commands["darts retrain"] = darts._subparsers._group_actions[0].choices["retrain"]
    for name, command in commands.items():
        assert command.description, f"tuneforge {name} --help has no description"
        assert command.epilog and "tuneforge " in command.epilog, f"tuneforge {name} --help has no example"


def test_server_takes_the_tracking_uri_as_every_command_does() -> None:
    from tuneforge.platform.cli import _parser

    for flag in ("--tracking-uri", "--backend-store-uri"):  # MLflow's name is kept
        args = _parser().parse_args(["server", flag, "sqlite:///x.db"])
        assert args.backend_store_uri == "sqlite:///x.db"
    compare = _parser().parse_args(["compare", "branin", "--gpus-per-trial", "1", "--smoke"])
    assert compare.gpus_per_trial == 1.0 and compare.smoke is True
