"""Starting points (``start_from:``, ``--start-from``), the gain over them, and ``--warm-start``
end to end: real searches of a benchmark function on the shared local Ray, recorded in real
MLflow stores. The search the gain and the warm starts read runs once, through the CLI's
``main`` in this process (its exit code and summary are real, its Ray the shared one); the
refusals run through the console script, which refuses before Ray starts.

The benchmark family has no default config, so a starting point's missing params take the
space's centre; a torch family's default config is read through planning alone (no Ray).
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

import tuneforge
from tests.conftest import isolated_environment, parent_and_children, write_space
from tests.platform.test_hostile_inputs import _everything
from tuneforge.platform.cli import main
from tuneforge.platform.planning import SearchOptions, plan_search
from tuneforge.platform.progress import SearchProgress, format_value
from tuneforge.platform.searchers.gp_searcher import GPSearcher
from tuneforge.schema import Metrics, Tags
from tuneforge.search_spaces import CategoricalParam, load_space, parse_space
from tuneforge.trainables import get_trainable

TUNEFORGE = str(Path(sys.executable).parent / "tuneforge")

BRANIN = """\
trainable: benchmark
metric: value
mode: min
config: {function: branin}
params:
  x1: {type: float, low: -5.0, high: 10.0}
  x2: {type: float, low: 0.0, high: 15.0}
"""
"""Branin on its usual domain, whose centre is x1=2.5, x2=7.5."""

TWO_POINTS = BRANIN + "start_from:\n  - {x1: -3.0, x2: 12.0}\n  - {x1: 9.0}\n"
TWO_POINTS_FILLED = [{"x1": -3.0, "x2": 12.0}, {"x1": 9.0, "x2": 7.5}]
"""TWO_POINTS' starting points as trials run them: the partial one takes the centre's x2."""

BAD_CORNER = BRANIN + "start_from:\n  - {x1: -5.0, x2: 0.0}\n"
BAD_CORNER_POINT = {"x1": -5.0, "x2": 0.0}
"""Branin's largest value on its domain (about 308): any other trial is better."""


def _in_start_order(result: Any) -> list[Any]:
    """The search's trials in the order they were created: by the number their id ends with
    (``..._00003``: Tune's own variants), else by their start (a searcher's ids are random)."""
    numbered = all("_" in trial.trial_id for trial in result.trials)
    return sorted(result.trials, key=lambda trial: int(trial.trial_id.rsplit("_", 1)[1]) if numbered
                  else trial.started_at)


def _runs(tracking_uri: str) -> tuple[int, int]:
    """Experiments and runs in a store."""
    client = MlflowClient(tracking_uri)
    experiments = client.search_experiments()
    return len(experiments), len(client.search_runs([e.experiment_id for e in experiments]))


# -- every algorithm evaluates the starting points first ------------------------------------------


@pytest.mark.parametrize(("algo", "n_trials"), [
    ("random", 4), ("bayes", 4), ("optuna-tpe", 4),
    pytest.param("optuna-gp", 4, marks=pytest.mark.full),
    pytest.param("grid", 2 + 2 * 2, marks=pytest.mark.full)])  # the points, then the 2 x 2 cells
def test_every_algorithm_runs_the_starting_points_first_within_its_trials(
        ray_local, tracking_uri, tmp_path, algo: str, n_trials: int) -> None:
    options = {"trials": 1, "grid_points": 2} if algo == "grid" else {"trials": 4}
    result = tuneforge.search(write_space(tmp_path, TWO_POINTS), algo=algo, seed=5, **options,
                              tracking_uri=tracking_uri, storage=tmp_path / "ray")
    trials = _in_start_order(result)
    assert result.status == "FINISHED" and len(trials) == n_trials
    # The two start at once (two CPUs): which of them Tune starts first is its own business.
    first_two = sorted(trial.params.items() for trial in trials[:2])
    assert first_two == sorted(point.items() for point in TWO_POINTS_FILLED)
    if algo == "grid":
        cells = sorted((trial.params["x1"], trial.params["x2"]) for trial in trials[2:])
        assert cells == [(-5.0, 0.0), (-5.0, 15.0), (10.0, 0.0), (10.0, 15.0)]
    parent, children = parent_and_children(tracking_uri, "space")
    assert len(children) == n_trials
    assert parent.data.params["start_points"] == "starting point 1, starting point 2"


def test_start_from_none_runs_no_starting_point(ray_local, tracking_uri, tmp_path) -> None:
    result = tuneforge.search(write_space(tmp_path, TWO_POINTS), algo="random", trials=2, seed=5,
                              start_from="none", tracking_uri=tracking_uri, storage=tmp_path / "ray")
    assert len(result.trials) == 2 and result.gain is None
    assert not any(trial.params in TWO_POINTS_FILLED for trial in result.trials)
    parent, _ = parent_and_children(tracking_uri, "space")
    assert parent.data.params["start_points"] == "none"
    assert Metrics.START_SCORE not in parent.data.metrics
    assert Metrics.GAIN_OVER_START not in parent.data.metrics
    assert Tags.START_POINT not in parent.data.tags


# -- the family's default config, planned (no Ray) ------------------------------------------------


def _plan(space: Any, tracking_uri: str, **options: Any) -> Any:
    return plan_search(space, SearchOptions(tracking_uri=tracking_uri, **options))


def test_a_torch_family_starts_from_its_defaults_under_asha(tracking_uri, tmp_path) -> None:
    digits = load_space("vit-digits")  # searching the patch too, whose default (7) does not fit 8x8
    space = replace(digits, config={k: v for k, v in digits.config.items() if k != "patch_size"},
                    params=(*digits.params, CategoricalParam("patch_size", (2, 4))))
    defaults = get_trainable("vit").defaults({})
    plan = _plan(space, tracking_uri)
    [point] = plan.start.points
    assert plan.start.labels == ("the default config",)
    assert set(point) == set(space.param_names)
    moved = {param.name for param in space.params if not param.contains(defaults[param.name])}
    assert moved == {"patch_size"}, "the ViT's 7-pixel patches are no choice of the digits' 8x8 images"
    assert {name: point[name] for name in point if name not in moved} == \
           {name: defaults[name] for name in space.param_names if name not in moved}
    assert point["patch_size"] == 4, "the nearest choice to 7 of [2, 4]"
    assert "patch_size" in plan.start.warning and "lr" not in plan.start.warning
    assert plan.schedule is not None and plan.schedule.name == "asha"
    assert _plan(space, tracking_uri, scheduler="none").schedule is None
    assert _plan(space, tracking_uri, start_from="none").start.points == ()
    assert not Path(tracking_uri.removeprefix("sqlite:///")).exists(), "planning creates nothing"


def test_a_default_outside_the_space_moves_to_the_nearest_bound_with_a_warning(tracking_uri,
                                                                               tmp_path) -> None:
    text = load_space("vit-digits").source.read_text()
    assert "lr: {type: float, low: 3.0e-4, high: 1.0e-2, log: true}" in text
    narrow = text.replace("lr: {type: float, low: 3.0e-4, high: 1.0e-2, log: true}",
                          "lr: {type: float, low: 1.0e-4, high: 1.0e-3, log: true}")
    plan = _plan(write_space(tmp_path, narrow, "vit.yaml"), tracking_uri)
    assert get_trainable("vit").defaults({})["lr"] == 3e-3
    assert plan.start.points[0]["lr"] == pytest.approx(1e-3)
    assert "lr (0.003 -> 0.001)" in plan.start.warning
    assert "\n" not in plan.start.warning


def test_an_sklearn_space_starts_only_from_its_own_list_without_a_scheduler(tracking_uri, tmp_path) -> None:
    plan = _plan("svc-wine", tracking_uri)
    assert plan.start.points == () and plan.schedule is None
    text = load_space("svc-wine").source.read_text() + "start_from:\n  - {svc__C: 10.0}\n"
    space = load_space(write_space(tmp_path, text, "svc.yaml"))
    gamma = space.decode(np.full(space.n_dims, 0.5))["svc__gamma"]
    listed = _plan(space, tracking_uri)
    # svc__gamma's default is 'scale', no value of the space: the centre; svc__kernel's is rbf.
    assert listed.start.points == ({"svc__C": 10.0, "svc__gamma": gamma, "svc__kernel": "rbf"},)
    assert listed.start.labels == ("starting point 1",) and listed.start.warning is None
    assert listed.schedule is None
    defaults = _plan(space, tracking_uri, start_from="defaults")
    assert defaults.start.labels == ("the default config", "starting point 1")
    assert defaults.start.points[0] == {"svc__C": 1.0, "svc__gamma": gamma, "svc__kernel": "rbf"}
    assert "svc__gamma ('scale'" in defaults.start.warning


# -- refusals: one line, exit 2, nothing created --------------------------------------------------


def _refused(folder: Path, *argv: str, tracking_uri: str | None = None) -> str:
    """Run ``tuneforge search ARGV`` in ``folder`` (its store and results folder there unless
    ``tracking_uri`` names another); assert exit 2, one ``error:`` line and nothing created in
    the folder or the store; the line."""
    tracking_uri = tracking_uri or f"sqlite:///{folder / 'mlflow.db'}"
    store = Path(tracking_uri.removeprefix("sqlite:///"))
    before = (_everything(folder), _everything(store.parent), store.exists() and _runs(tracking_uri))
    done = subprocess.run([TUNEFORGE, "search", *argv, "--tracking-uri", tracking_uri,
                           "--storage", str(folder / "ray_results")], cwd=folder, capture_output=True,
                          text=True, timeout=120)  # the shell's MLflow and Ray settings are unset
    lines = done.stderr.splitlines()
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    after = (_everything(folder), _everything(store.parent), store.exists() and _runs(tracking_uri))
    assert after == before, "nothing may be created"
    return lines[0]


@pytest.mark.parametrize(("space", "argv", "message"), [
    pytest.param(BRANIN + "start_from:\n  - {x1: 1.0}\n  - {x1: 20.0, x2: 1.0}\n", (),
                 "space.yaml: start_from[2].x1: 20.0 is outside the param's range", id="point out of bounds"),
    pytest.param(BRANIN + "start_from:\n  - {x1: 1.0, x3: 1.0}\n", (),
                 "space.yaml: start_from[1]: unknown key 'x3'; the space's params: x1, x2", id="unknown key"),
    pytest.param(BRANIN, ("--start-from", "bogus"),
                 "--start-from: expected one of defaults, space, none, got 'bogus'", id="start-from bogus"),
    pytest.param(BRANIN, ("--start-from", "defaults"),
                 "--start-from defaults: trainable 'benchmark' has no default config", id="no defaults"),
    pytest.param(BRANIN, ("--time-budget", "10q"),
                 "--time-budget: expected a duration above 0 like 90s, 45m or 2h, got '10q'",
                 id="time budget 10q"),
])
def test_bad_starting_points_and_budgets_are_refused(tmp_path, space: str, argv: tuple[str, ...],
                                                     message: str) -> None:
    write_space(tmp_path, space)
    assert message in _refused(tmp_path, "space.yaml", *argv)


# -- the gain over a starting point, and warm start end to end -------------------------------------


@dataclass(frozen=True)
class FirstSearch:
    """The module's first search: ``tuneforge search`` of :data:`BAD_CORNER`, run once."""

    tracking_uri: str
    code: int
    out: str
    """What the command printed."""
    parent: Any
    trials: list[tuple[dict[str, float], float]]
    """Each trial's values and score, as MLflow holds them."""


@pytest.fixture(scope="module")
def first_search(ray_local, tmp_path_factory: pytest.TempPathFactory) -> FirstSearch:
    """``tuneforge search`` (in this process, on the shared Ray) of Branin from its bad corner,
    bayes, 6 trials, into a store of its own (experiment ``first``), which the warm-start tests
    read and write their warm-started searches beside."""
    folder = tmp_path_factory.mktemp("first")
    tracking_uri = f"sqlite:///{folder / 'mlflow.db'}"
    out = io.StringIO()
    with isolated_environment(), contextlib.redirect_stdout(out):
        code = main(["search", str(write_space(folder, BAD_CORNER)), "--algo", "bayes", "--trials", "6",
                     "--seed", "4", "--experiment", "first", "--tracking-uri", tracking_uri,
                     "--storage", str(folder / "ray")])
    parent, children = parent_and_children(tracking_uri, "first")
    trials = [({name: float(text) for name, text in child.data.params.items()}, child.data.metrics["value"])
              for child in children]
    return FirstSearch(tracking_uri, code, out.getvalue(), parent, trials)


def test_the_gain_over_a_bad_starting_point_is_recorded_and_printed(first_search) -> None:
    assert first_search.code == 0, first_search.out
    [start] = [value for values, value in first_search.trials if values == BAD_CORNER_POINT]
    best = min(value for _, value in first_search.trials)
    assert len(first_search.trials) == 6 and best < start
    metrics, tags = first_search.parent.data.metrics, first_search.parent.data.tags
    assert metrics[Metrics.START_SCORE] == start
    assert metrics[Metrics.GAIN_OVER_START] == pytest.approx(start - best)
    assert metrics[Metrics.GAIN_OVER_START] > 0
    assert tags[Tags.START_POINT] == "starting point 1"
    assert first_search.parent.data.params["start_points"] == "starting point 1"
    assert (f"Against the start: best value {format_value(best)}, starting point 1 {format_value(start)} "
            f"({start - best:.4g} better), found by trial ") in first_search.out


def test_the_report_states_the_gain_over_the_starting_point(first_search, tmp_path) -> None:
    from tuneforge.dashboards import build_report

    [start] = [value for values, value in first_search.trials if values == BAD_CORNER_POINT]
    gain = start - min(value for _, value in first_search.trials)
    report = build_report("first", tracking_uri=first_search.tracking_uri, out_dir=tmp_path / "report")
    html = report.read_text()
    assert f"starting point 1 {format_value(start)} (gain {gain:+.4g})" in html


NARROW_X1 = BAD_CORNER.replace("x1: {type: float, low: -5.0, high: 10.0}",
                               "x1: {type: float, low: -5.0, high: 2.5}")
"""The first search's space with x1's upper half cut off: trials beyond 2.5 do not fit it."""


@pytest.fixture(scope="module")
def warm_search(first_search, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, str]:
    """A 3-trial bayes search of :data:`NARROW_X1` warm-started from ``first`` (same store,
    experiment ``warm``), and its progress output."""
    folder = tmp_path_factory.mktemp("warm")
    out = io.StringIO()
    with isolated_environment():
        result = tuneforge.search(write_space(folder, NARROW_X1), algo="bayes", trials=3, seed=4,
                                  warm_start="first", experiment="warm", storage=folder / "ray",
                                  tracking_uri=first_search.tracking_uri,
                                  on_event=SearchProgress(stream=out, live=False))
    return result, out.getvalue()


def _fits_narrow(params: dict[str, Any]) -> bool:
    return params["x1"] <= 2.5


def test_a_warm_started_search_names_its_source_and_uses_the_trials_that_fit(first_search,
                                                                            warm_search) -> None:
    assert first_search.code == 0 and len(first_search.trials) == 6
    result, out = warm_search
    n_used = sum(_fits_narrow(values) for values, _ in first_search.trials)
    assert 1 < n_used < 6, "the narrower space keeps some of the first search's trials, not all"
    assert result.status == "FINISHED" and len(result.trials) == 3
    parent, _ = parent_and_children(first_search.tracking_uri, "warm")
    assert parent.data.tags[Tags.WARM_START] == first_search.parent.info.run_id
    assert parent.data.params["warm_start"] == "first"
    narrow = plan_search(parse_space(yaml.safe_load(NARROW_X1), name="narrow"),
                         SearchOptions(warm_start="first", tracking_uri=first_search.tracking_uri))
    fitting = [(values, value) for values, value in first_search.trials if _fits_narrow(values)]
    assert sorted(narrow.warm_start.trials, key=repr) == sorted(fitting, key=repr)
    [warm_line] = [line for line in out.splitlines() if line.startswith("  Warm:   ")]
    assert warm_line == (f"  Warm:   warm start: {n_used} of 6 trials of 1 earlier search used; "
                         f"skipped: {6 - n_used} with x1 outside the space")


def test_a_starting_point_the_warm_start_scored_is_not_run_again(first_search, warm_search) -> None:
    result, _ = warm_search
    [start] = [value for values, value in first_search.trials if values == BAD_CORNER_POINT]
    assert all(trial.params != BAD_CORNER_POINT for trial in result.trials)
    # The gain is against the starting point's score in the search it was warm-started from.
    assert result.gain is not None, "the starting point was scored by the warm start"
    assert result.gain.start == start and result.gain.start_label == "starting point 1"
    parent, _ = parent_and_children(first_search.tracking_uri, "warm")
    assert parent.data.metrics[Metrics.START_SCORE] == start
    assert parent.data.tags[Tags.START_POINT] == "starting point 1"


def test_the_planned_searchers_condition_on_every_earlier_trial(first_search, tmp_path) -> None:
    space = load_space(write_space(tmp_path, BAD_CORNER))
    options = SearchOptions(algo="bayes", seed=4, warm_start="first", tracking_uri=first_search.tracking_uri)
    plan = plan_search(space, options)
    assert plan.start.labels == ("starting point 1",), "the gain is measured against it"
    searcher = plan.setup.make_search_alg(None)
    assert isinstance(searcher, GPSearcher)
    assert searcher.points_to_evaluate == [], "the first search scored the one starting point"
    assert len(searcher.get_state()["observed"]) == 6
    optuna = plan_search(space, SearchOptions(algo="optuna-tpe", seed=4, warm_start="first",
                                              tracking_uri=first_search.tracking_uri))
    study = optuna.setup.make_search_alg(None)._ot_study
    assert sorted(trial.value for trial in study.trials) == sorted(value for _, value in first_search.trials)


def test_a_gp_searcher_told_earlier_trials_suggests_from_them(first_search) -> None:
    space = parse_space({"trainable": "benchmark", "metric": "value", "mode": "min",
                         "params": {"x1": {"type": "float", "low": -5.0, "high": 10.0},
                                    "x2": {"type": "float", "low": 0.0, "high": 15.0}}}, name="branin")
    warm = GPSearcher(space, "value", "min", seed=7)
    for values, value in first_search.trials:
        warm.add_evaluated_point(dict(values), value)
    observed = warm.get_state()["observed"]
    assert len(observed) == 6
    assert sorted(row[-1] for row in observed) == sorted(-value for _, value in first_search.trials)
    cold = GPSearcher(space, "value", "min", seed=7)
    assert warm.suggest("t1") != cold.suggest("t1")


def test_warm_start_refusals_create_nothing(first_search, tmp_path) -> None:
    store = first_search.tracking_uri
    unknown = _refused(tmp_path, "branin", "--warm-start", "nope", tracking_uri=store)
    assert unknown == f"error: --warm-start: no experiment or search run 'nope' in {store}"
    other = _refused(tmp_path, "svc-wine", "--warm-start", "first", tracking_uri=store)
    assert other == ("error: --warm-start: experiment 'first' holds searches of trainable 'benchmark', "
                     "not 'sklearn'")


# -- GPSearcher's evaluated_rewards (Ray's contract) ----------------------------------------------


def test_evaluated_rewards_are_observed_not_suggested() -> None:
    space = parse_space({"trainable": "t", "metric": "loss", "mode": "min",
                         "params": {"x": {"type": "float", "low": 0.0, "high": 1.0},
                                    "k": {"type": "int", "low": 1, "high": 4}}}, name="tiny")
    points = [{"x": 0.25, "k": 2}, {"x": 0.75, "k": 4}]
    searcher = GPSearcher(space, "loss", "min", seed=0, points_to_evaluate=points,
                          evaluated_rewards=[3.0, 1.5])
    state = searcher.get_state()
    assert state["queue"] == []
    assert [row[-1] for row in state["observed"]] == [-3.0, -1.5], "larger is better inside: -loss"
    assert [row[:-1] for row in state["observed"]] == [space.encode(p).tolist() for p in points]
    suggested = [searcher.suggest(f"t{i}") for i in range(3)]
    assert not any(values in points for values in suggested)
    unscored = GPSearcher(space, "loss", "min", seed=0, points_to_evaluate=points)
    assert [unscored.suggest(f"t{i}") for i in range(2)] == points, "without rewards they are suggested"
    with pytest.raises(ValueError, match="evaluated_rewards: 1 rewards for 2 points_to_evaluate"):
        GPSearcher(space, "loss", "min", points_to_evaluate=points, evaluated_rewards=[1.0])
