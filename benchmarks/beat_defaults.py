"""Searches that beat the defaults (issue 24): three arms with the same wall-clock budget.

For each space (``vit-mnist``, ``vit-fashion-mnist``, ``dcgan-mnist``), one after another in one
invocation, each arm a ``tuneforge.search`` with its own MLflow store and Ray folder:

``bayes``    (a) what README tells a user to run: ``tuneforge search SPACE --algo bayes
             --time-budget B``, with issue 24's defaults (the family's default config first, ASHA)
``random``   (b) ``--algo random --start-from none --scheduler none --time-budget B``
``default``  (c) the default config alone: ``--algo random --trials 1 --start-from defaults
             --scheduler none --time-budget B`` (one trial; it ends before the budget)

Each arm records its best validation metric; the test-split score of the best trial's LOGGED
model, loaded back from MLflow (ViT: accuracy on the 10k test images; DCGAN: ``clf_fid`` of 5,000
samples of the logged generator against the first 5,000 test images, on the trials' own feature
classifier; where the best trial logged no model, as a trial stopped early may not, the best
trial that did, with its rank, status and epochs); the best-so-far curve (seconds since
the first trial started, at each trial's end, against the best validation metric so far); the
trials and the wall time. Each finished arm is one line of a JSON-lines file per space (keyed by
the space file's digest too: an edited space is measured afresh), so an interrupted invocation
goes on where it stopped (an arm that was cut off runs again from
scratch). Then a table, issue 24's targets as PASS/FAIL lines, and one picture per space
(``benchmarks/results/beat-defaults-SPACE.png``): each arm's best so far against wall time, the
default config's score as a horizontal line.

    .venv/bin/python benchmarks/beat_defaults.py                       # 3 spaces x 3 arms x 30 min
    .venv/bin/python benchmarks/beat_defaults.py --space vit-mnist --budget 30m
    .venv/bin/python benchmarks/beat_defaults.py --space vit-mnist --smoke   # a quick check
    .venv/bin/python benchmarks/beat_defaults.py --report              # table, checks, pictures
"""

from __future__ import annotations

import argparse
import hashlib
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import RESULTS, append_json_line, machine, measure_and_report, read_json_lines, search_in_folder

SPACES = ("vit-mnist", "vit-fashion-mnist", "dcgan-mnist")
ARMS: dict[str, dict[str, Any]] = {
    "bayes": {"algo": "bayes"},  # start_from and scheduler left to the platform's defaults
    "random": {"algo": "random", "start_from": "none", "scheduler": "none"},
    "default": {"algo": "random", "trials": 1, "start_from": "defaults", "scheduler": "none"},
}
ARM_LABELS = {"bayes": "(a) bayes, defaults", "random": "(b) random, no start, no scheduler",
              "default": "(c) the default config alone"}
TEST_ACCURACY_TARGETS = {"vit-mnist": 0.985, "vit-fashion-mnist": 0.895}
FID_RATIO_TARGET = 0.7
"""dcgan-mnist: arm (a)'s clf_fid at most this times the default config's (issue 24)."""
SMOKE_BUDGET = "20s"
_N_GAN_TEST_IMAGES = 5_000
"""As many generated as real test images, the size of a trial's own scoring set."""
_N_GAN_TEST_IMAGES_SMOKE = 256
"""A smoke trial scores 256 validation images (its feature classifier is the cheap one too)."""
_GAN_TEST_NOISE_SEED = 4_321
"""One fixed noise batch for every arm's generator, so that their test scores differ by the
generator alone."""


@dataclass(frozen=True)
class ModelScore:
    """The test-split score of a family's logged model: its name and how to compute it from the
    model's URI, the tracking URI, the trial's run params and config, and the smoke flag."""

    name: str
    compute: Callable[[str, str, dict[str, Any], bool], float]


def _vit_test_accuracy(model_uri: str, tracking_uri: str, config: dict[str, Any], smoke: bool) -> float:
    from vit import test_accuracy

    return test_accuracy(model_uri, tracking_uri, config["dataset"])


def _gan_test_clf_fid(model_uri: str, tracking_uri: str, config: dict[str, Any], smoke: bool) -> float:
    """``clf_fid`` of the logged generator's samples against the test split's first images, on
    the feature classifier its trials were scored with (the dataset's, for ``feature_seed``)."""
    import mlflow.pytorch
    import numpy as np
    import torch

    from tuneforge.trainables.gans.features import feature_classifier
    from tuneforge.trainables.gans.metrics import SampleQuality
    from tuneforge.trainables.images import load_image_dataset

    mlflow.set_tracking_uri(tracking_uri)
    generator = mlflow.pytorch.load_model(model_uri)  # z (N, latent_dim) -> images in [0, 1]
    splits = load_image_dataset(config["dataset"])
    classifier = feature_classifier(config["dataset"], splits, seed=int(config.get("feature_seed", 0)),
                                    smoke=smoke)
    n = min(_N_GAN_TEST_IMAGES_SMOKE if smoke else _N_GAN_TEST_IMAGES, len(splits.test_labels))
    real = torch.from_numpy(np.asarray(splits.test_images[:n], np.float32) / 255.0)
    noise = torch.Generator().manual_seed(_GAN_TEST_NOISE_SEED)
    z = torch.randn(n, int(config["latent_dim"]), generator=noise)
    with torch.no_grad():
        fake = torch.cat([generator(chunk) for chunk in z.split(500)])
    return float(SampleQuality(classifier.network, real)(fake)["clf_fid"])


TEST_SCORES = {"vit": ModelScore("test_accuracy", _vit_test_accuracy),
               "dcgan": ModelScore("test_clf_fid", _gan_test_clf_fid)}


def results_path(space: str, smoke: bool) -> Path:
    return RESULTS / f"beat-defaults-{space}{'-smoke' if smoke else ''}.jsonl"


def picture_path(space: str, smoke: bool) -> Path:
    return RESULTS / f"beat-defaults-{space}{'-smoke' if smoke else ''}.png"


def _key(row: dict[str, Any]) -> tuple:
    return row["space"], row.get("space_digest"), row["arm"], row["budget"], row["seed"], row["smoke"]


def space_digest(space: str) -> str:
    """The bundled space file's SHA-256, first 12 digits: arms of an edited space are measured
    again, never mixed with arms of the space as it was."""
    from tuneforge.search_spaces import load_space

    return hashlib.sha256(load_space(space).source.read_bytes()).hexdigest()[:12]


def _command(space: str, arm: str, args: argparse.Namespace) -> str:
    """The ``tuneforge search`` command line this arm is."""
    flags = [f"--{name.replace('_', '-')} {value}" for name, value in ARMS[arm].items()]
    return (f"tuneforge search {space} {' '.join(flags)} --time-budget {args.budget} --seed {args.seed} "
            f"--cpus-per-trial {args.cpus:g}{' --smoke' if args.smoke else ''}")


def _trial_printer(arm: str) -> Callable[[Any], None]:
    from tuneforge.platform.events import TrialEnded

    def on_event(event: Any) -> None:
        if isinstance(event, TrialEnded):
            record, total = event.record, f"/{event.n_trials}" if event.n_trials else ""
            print(f"    {arm} trial {event.n_ended}{total}: {record.status.value}, {record.iterations} "
                  f"epochs, best so far {event.best_score}", file=sys.stderr, flush=True)

    return on_event


def run_arm(space_name: str, arm: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """One arm's search in ``folder``, and what it measured (a row without the key)."""
    from tuneforge.search_spaces import load_space

    space = load_space(space_name)
    started = time.perf_counter()
    result = search_in_folder(space, folder, args.cpus, on_event=_trial_printer(arm),
                              time_budget=args.budget, seed=args.seed, smoke=args.smoke, **ARMS[arm])
    wall_s = time.perf_counter() - started
    row = {"metric": result.metric, "mode": result.mode, "status": result.status.value,
           "best_val": result.best_score, "best_params": result.best_config,
           **_trial_counts(result), **_curve(result), "wall_s": wall_s,
           **_parent_metrics(result)}
    row.update(_test_score(result, space, args.smoke))
    return row


def _trial_counts(result: Any) -> dict[str, int]:
    from tuneforge.schema import TrialStatus

    statuses = [t.status for t in result.trials]
    return {"n_trials": len(statuses), "n_scored": len(result.ranked()),
            "n_stopped": statuses.count(TrialStatus.STOPPED), "n_failed": statuses.count(TrialStatus.FAILED),
            "total_epochs": sum(t.iterations for t in result.trials)}


def _curve(result: Any) -> dict[str, Any]:
    """The best-so-far curve: [seconds since the first trial started, best validation metric so
    far] at the end of each trial that scored (by ``SearchResult.ranked``'s rule: its last
    result), and ``search_s``, the first trial's start to the last trial's end."""
    if not result.trials:
        return {"curve": [], "search_s": 0.0}
    first = min(t.started_at for t in result.trials)
    last = max(t.ended_at or t.started_at for t in result.trials)
    better = max if result.mode == "max" else min
    curve, best = [], None
    for trial in sorted(result.ranked(), key=lambda t: t.ended_at or last):
        value = trial.metrics[result.metric]
        best = value if best is None else better(best, value)
        curve.append([(trial.ended_at or last) - first, best])
    return {"curve": curve, "search_s": last - first}


def _parent_metrics(result: Any) -> dict[str, Any]:
    """``start_score``, ``gain_over_start`` and ``best_<metric>`` as the parent run logged them
    (None for one it did not log), what the start was (``start_point``) and whether the budget
    ended the search."""
    from mlflow import MlflowClient

    from tuneforge.schema import Metrics, Tags

    run = MlflowClient(result.tracking_uri).get_run(result.parent_run_id)
    names = (Metrics.START_SCORE, Metrics.GAIN_OVER_START, Metrics.best(result.metric))
    return {**{name: run.data.metrics.get(name) for name in names},
            "start_point": run.data.tags.get(Tags.START_POINT),
            "time_budget_spent": run.data.tags.get(Tags.TIME_BUDGET_SPENT) == "true"}


def _test_score(result: Any, space: Any, smoke: bool) -> dict[str, Any]:
    """The test-split score of the best-ranked trial with a logged model, that trial's rank (1:
    the best trial), its validation score, status and epochs as recorded; None and None where no
    trial logged one."""
    from mlflow import MlflowClient

    from tuneforge.schema import Artifacts

    score = TEST_SCORES[space.trainable]
    client = MlflowClient(result.tracking_uri)
    for rank, trial in enumerate(result.ranked(), 1):
        if trial.run_id and client.list_artifacts(trial.run_id, Artifacts.MODEL):
            run_params = client.get_run(trial.run_id).data.params
            config = {**space.config, **run_params, **trial.params}
            model_uri = f"runs:/{trial.run_id}/{Artifacts.MODEL}"
            value = score.compute(model_uri, result.tracking_uri, config, smoke)
            return {"test_metric": score.name, "test_score": value, "test_model_rank": rank,
                    "test_model_val": trial.metrics[result.metric], "test_model_status": trial.status.value,
                    "test_model_epochs": trial.iterations}
    return {"test_metric": score.name, "test_score": None, "test_model_rank": None}


def measure(args: argparse.Namespace, space: str) -> None:
    path = results_path(space, args.smoke)
    done = {_key(row) for row in read_json_lines(path)}
    for arm in args.arms:
        row = {"space": space, "space_digest": space_digest(space), "arm": arm, "budget": args.budget,
               "seed": args.seed, "smoke": args.smoke}
        if _key(row) in done:
            print(f"{space} {arm}: in {path.name} already", file=sys.stderr)
            continue
        print(f"{space} {arm}: {_command(space, arm, args)} ...", file=sys.stderr, flush=True)
        with _arm_folder(args, space, arm) as folder:
            row.update(run_arm(space, arm, args, folder))
        if row["best_val"] is None:
            print(f"  {arm}: no trial scored ({row['n_failed']} failed, search {row['status']}); not kept",
                  file=sys.stderr, flush=True)
            continue
        row.update(command=_command(space, arm, args), cpus_per_trial=args.cpus,
                   date=time.strftime("%Y-%m-%d"), machine=machine("torch"))
        append_json_line(path, row)
        print(f"  {arm}: best {row['metric']} {_cell(row['best_val'])}, {row['test_metric']} "
              f"{_cell(row['test_score'])}, {row['n_trials']} trials, {row['wall_s'] / 60:.1f} min",
              file=sys.stderr, flush=True)


@contextmanager
def _arm_folder(args: argparse.Namespace, space: str, arm: str) -> Iterator[Path]:
    """The arm's folder: ``--keep``'s ``SPACE/ARM`` (emptied first: a cut-off arm starts again
    from scratch), else a temporary one, removed afterwards."""
    if not args.keep:
        with tempfile.TemporaryDirectory(prefix="beat-defaults-") as folder:
            yield Path(folder)
        return
    kept = Path(args.keep) / space / arm
    shutil.rmtree(kept, ignore_errors=True)
    yield kept


def _cell(value: float | None, spec: str = ".4f") -> str:
    return "—" if value is None else format(value, spec)


def report(args: argparse.Namespace, space: str) -> None:
    digest = space_digest(space)
    rows = {row["arm"]: row for row in read_json_lines(results_path(space, args.smoke))
            if (row["budget"], row["seed"], row.get("space_digest")) == (args.budget, args.seed, digest)}
    if not rows:
        print(f"\n{space}: no results for budget {args.budget}, seed {args.seed} and the space as it is "
              f"now ({digest})")
        return
    any_row = next(iter(rows.values()))
    print(f"\n### {space}: three arms, {args.budget} each{' (smoke)' if args.smoke else ''}\n")
    print(f"| arm | trials (stopped) | epochs | best {any_row['metric']} | {any_row['test_metric']} "
          "(model of trial rank) | start_score | gain_over_start | search min | wall min |")
    print("|---|---|---|---|---|---|---|---|---|")
    for arm in (a for a in ARMS if a in rows):
        row = rows[arm]
        print(f"| {ARM_LABELS[arm]} | {row['n_trials']} ({row['n_stopped']}) | {row['total_epochs']} | "
              f"{_cell(row['best_val'])} | {_cell(row['test_score'])} ({row['test_model_rank'] or '—'}) | "
              f"{_cell(row['start_score'])} | {_cell(row['gain_over_start'])} | "
              f"{row['search_s'] / 60:.1f} | {row['wall_s'] / 60:.1f} |")
    print(f"\nMachine: {any_row['machine']}")
    note = " (smoke: not the bar)" if args.smoke else ""
    for passed, text in checks(space, rows):
        print(f"{'PASS' if passed else 'FAIL'} {space}: {text}{note}")
    import matplotlib.pyplot as plt

    figure = best_so_far_figure(space, rows)
    figure.savefig(picture_path(space, args.smoke))
    plt.close(figure)
    print(f"picture: {picture_path(space, args.smoke)}")


def _beats(a: float | None, b: float | None, mode: str) -> bool:
    if a is None or b is None or math.isnan(a) or math.isnan(b):
        return False
    return a > b if mode == "max" else a < b


def checks(space: str, rows: dict[str, dict[str, Any]]) -> list[tuple[bool, str]]:
    """Issue 24's targets on the arms' test-split scores, each (met, what was compared)."""
    a, b, c = (rows.get(arm, {}) for arm in ("bayes", "random", "default"))
    mode, name = next(iter(rows.values()))["mode"], next(iter(rows.values()))["test_metric"]
    score_a, score_b, score_c = (row.get("test_score") for row in (a, b, c))
    lines = []
    if space in TEST_ACCURACY_TARGETS:
        target = TEST_ACCURACY_TARGETS[space]
        lines.append((score_a is not None and score_a >= target,
                      f"(a) {name} {_cell(score_a)} >= {target}"))
    elif score_c is not None:
        lines.append((score_a is not None and score_a <= FID_RATIO_TARGET * score_c,
                      f"(a) {name} {_cell(score_a)} <= {FID_RATIO_TARGET} x (c)'s {_cell(score_c)} "
                      f"= {FID_RATIO_TARGET * score_c:.4f}"))
    else:
        lines.append((False, f"(a) {name} against {FID_RATIO_TARGET} x (c)'s: (c) has no test score"))
    for label, other in (("(b)", score_b), ("(c)", score_c)):
        text = f"(a) {name} {_cell(score_a)} beats {label}'s {_cell(other)}"
        lines.append((_beats(score_a, other, mode), text))
    return lines


def best_so_far_figure(space: str, rows: dict[str, dict[str, Any]]) -> Any:
    """Each arm's best validation metric so far (a dot at each trial's end that improved it or not)
    against minutes since its first trial started, held to the right edge: the longest arm's end
    (a search's best does not change once it ended); the default config's (arm (c)'s) score as a
    horizontal line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    any_row = next(iter(rows.values()))
    figure, axes = plt.subplots(figsize=(7, 3.8), dpi=100)
    right_edge = max(row["search_s"] for row in rows.values()) / 60
    for index, arm in enumerate(a for a in ("bayes", "random") if a in rows):
        points = rows[arm]["curve"]
        if points:
            minutes = [seconds / 60 for seconds, _ in points]
            values = [value for _, value in points]
            axes.step([*minutes, right_edge], [*values, values[-1]], where="post", color=f"C{index}",
                      label=f"{ARM_LABELS[arm]}: {values[-1]:.4f}")
            axes.scatter(minutes, values, color=f"C{index}", s=12)
    default = rows.get("default", {}).get("best_val")
    if default is not None:
        axes.axhline(default, color="k", ls="--", lw=1, label=f"{ARM_LABELS['default']}: {default:.4f}")
    axes.set_xlim(left=0)
    axes.set_xlabel("minutes since the arm's first trial started")
    axes.set_ylabel(f"best {any_row['metric']} so far")
    better = "higher" if any_row["mode"] == "max" else "lower"
    axes.set_title(f"{space}: best so far (validation; {better} is better), {any_row['budget']} an arm",
                   fontsize=10)
    axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    return figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", choices=SPACES, action="append",
                        help="a space (repeatable; default: all three, one after another)")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS),
                        help="which arms to run (default: all three)")
    parser.add_argument("--budget", metavar="DURATION",
                        help=f"each arm's wall-clock budget (default 30m; --smoke: {SMOKE_BUDGET})")
    parser.add_argument("--seed", type=int, default=0, help="every arm's search seed (default 0)")
    parser.add_argument("--cpus", type=float, default=2.0,
                        help="CPUs (and torch threads) a trial (default 2: one trial at a time on 2 CPUs)")
    parser.add_argument("--smoke", action="store_true",
                        help="tuneforge's --smoke trials and a tiny budget; results in their own files")
    parser.add_argument("--keep", metavar="DIR",
                        help="keep each arm's MLflow store and Ray folder in DIR/SPACE/ARM")
    parser.add_argument("--report", action="store_true", help="only the tables, checks and pictures")
    args = parser.parse_args()
    args.budget = args.budget or (SMOKE_BUDGET if args.smoke else "30m")
    measure_and_report(args, args.space or SPACES, measure, report)


if __name__ == "__main__":
    main()
