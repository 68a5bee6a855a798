"""`--warm-start`: earlier searches read back from a real MLflow store, as points of a new space.

One SQLite store for the module holds the searches, written with ``MlflowClient`` in the
runner's schema (a parent run per search, a child run per trial); every test only reads it.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag, ViewType

from tuneforge.errors import ConfigError
from tuneforge.platform._store_writer import artifact_location, param_value
from tuneforge.platform.warm_start import WarmStart, read_warm_start, typed_params
from tuneforge.schema import Artifacts, Roles, Tags, TrialStatus
from tuneforge.search_spaces import SearchSpace, parse_space

BASE: dict[str, Any] = {
    "trainable": "sklearn", "metric": "score", "mode": "max",
    "config": {"epochs": 4, "optimizer": "adam"},
    "params": {"lr": {"type": "float", "low": 0.0001, "high": 0.1, "log": True},
               "depth": {"type": "int", "low": 1, "high": 8},
               "kind": {"type": "categorical", "choices": ["a", "b", None]}},
}
"""The space of the earlier searches (``space.yaml``), and of the new search unless changed."""


@dataclass(frozen=True)
class Trial:
    """A trial run as the runner records it: params, last metrics, MLflow status, tags."""

    params: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    status: str = "FINISHED"
    tags: dict[str, str] = field(default_factory=dict)


def _scored(lr: float, depth: int, kind: Any, score: float, **changes: Any) -> Trial:
    return Trial({"lr": lr, "depth": depth, "kind": kind}, {"score": score}, **changes)


BASE_TRIALS = (
    _scored(0.001, 2, "a", 0.5),
    _scored(0.05, 6, "b", 0.9),
    _scored(0.01, 4, None, 0.7, tags={Tags.STATUS: TrialStatus.STOPPED.value}),  # stopped early: scored
    _scored(0.002, 3, "a", 0.95, status="FAILED"),
    _scored(0.003, 3, "a", 0.99, status="KILLED"),
    _scored(0.004, 3, "a", 0.99, status="RUNNING"),
    _scored(0.005, 3, "a", math.nan),
    _scored(0.006, 3, "a", 0.99, tags={Tags.NO_SCORE: "its last score was nan"}),  # finite earlier value
    Trial({"lr": 0.007, "depth": 3, "kind": "a"}, {"other": 1.0}),  # never reported the metric
    _scored(0.05, 6, "b", 0.8),  # the second trial's point again, with a lower score
)
"""The one search of experiment ``base``: four scored trials (one STOPPED, one a repeat), six not."""
BASE_USED = [({"lr": 0.001, "depth": 2, "kind": "a"}, 0.5), ({"lr": 0.05, "depth": 6, "kind": "b"}, 0.9),
             ({"lr": 0.01, "depth": 4, "kind": None}, 0.7), ({"lr": 0.05, "depth": 6, "kind": "b"}, 0.8)]


@dataclass(frozen=True)
class Store:
    """The module's store and the ids of what it holds."""

    tracking_uri: str
    experiment_ids: dict[str, str]
    """By experiment name."""
    searches: dict[str, str]
    """Parent run ids, by a name of this test module's."""
    trial_run_ids: dict[str, list[str]]
    """Each search's trial run ids, by the same name."""


class _Writer:
    """Writes searches in the runner's schema, each run one millisecond after the last (so that
    oldest first is a fixed order)."""

    def __init__(self, client: MlflowClient, tracking_uri: str) -> None:
        self.client, self.tracking_uri, self.clock_ms = client, tracking_uri, 1_700_000_000_000

    def experiment(self, name: str) -> str:
        location = artifact_location(self.tracking_uri, name)  # beside the store, as the runner's
        return self.client.create_experiment(name, artifact_location=location)

    def search(self, experiment_id: str, trials: tuple[Trial, ...], *, document: dict[str, Any] | None = None,
               smoke: bool = False, has_space: bool = True) -> tuple[str, list[str]]:
        """A search's parent run (params, tags, ``space.yaml``) and its trials' runs; their ids."""
        document = document or BASE
        config = {**document.get("config", {}), **({"smoke": True} if smoke else {})}
        params = {"trainable": document["trainable"], "metric": document["metric"], "mode": document["mode"],
                  "space": "tiny", "algo": "random", **{f"config.{k}": v for k, v in config.items()}}
        parent = self.run(experiment_id, {Tags.ROLE: Roles.SEARCH}, params)
        if has_space:
            self.client.log_text(parent, yaml.safe_dump(document, sort_keys=False), Artifacts.SPACE)
        children = [self._trial(experiment_id, parent, trial) for trial in trials]
        self.client.set_terminated(parent, status="FINISHED")
        return parent, children

    def _trial(self, experiment_id: str, parent: str, trial: Trial) -> str:
        run_id = self.run(experiment_id, {Tags.PARENT_RUN_ID: parent, Tags.ROLE: Roles.TRIAL, **trial.tags},
                           trial.params)
        metrics = [Metric(name, value, self.clock_ms, 1) for name, value in trial.metrics.items()]
        self.client.log_batch(run_id, metrics=metrics)
        if trial.status != "RUNNING":
            self.client.set_terminated(run_id, status=trial.status)
        return run_id

    def run(self, experiment_id: str, tags: dict[str, str], params: dict[str, Any]) -> str:
        self.clock_ms += 1
        run_id = self.client.create_run(experiment_id, start_time=self.clock_ms, tags=tags).info.run_id
        self.client.log_batch(run_id, params=[Param(k, param_value(k, v)) for k, v in params.items()],
                              tags=[RunTag(k, v) for k, v in tags.items()])
        return run_id


def _document(**changes: Any) -> dict[str, Any]:
    """BASE with top-level keys replaced, ``config``/``params`` entries added (a value of None
    removes the entry)."""
    document = copy.deepcopy(BASE)
    for section in ("config", "params"):
        for key, value in changes.pop(section, {}).items():
            if value is None:
                document[section].pop(key, None)
            else:
                document[section][key] = value
    return {**document, **changes}


def _space(**changes: Any) -> SearchSpace:
    return parse_space(_document(**changes), name="tiny")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    tracking_uri = f"sqlite:///{tmp_path_factory.mktemp('warm') / 'mlflow.db'}"
    writer = _Writer(MlflowClient(tracking_uri), tracking_uri)
    experiments = {name: writer.experiment(name) for name in ("base", "mixed", "empty")}
    mixed = experiments["mixed"]
    one = (_scored(0.01, 2, "a", 0.6),)
    searches = {
        "base": writer.search(experiments["base"], BASE_TRIALS),
        "mixed": writer.search(mixed, (_scored(0.02, 3, "b", 0.4), _scored(0.03, 5, "a", 0.3))),
        "val_loss": writer.search(mixed, one * 2, document=_document(metric="val_loss", mode="min")),
        "smoke": writer.search(mixed, one, smoke=True),
        "epochs": writer.search(mixed, one, document=_document(config={"epochs": 8})),
        "vit": writer.search(mixed, one * 3, document=_document(trainable="vit")),
        "min": writer.search(mixed, one, document=_document(mode="min")),
        "no_space": writer.search(mixed, one, has_space=False),
    }
    searches["comparison"] = (writer.run(experiments["empty"], {Tags.ROLE: Roles.COMPARISON}, {}), [])
    return Store(tracking_uri, experiments, {name: ids[0] for name, ids in searches.items()},
                 {name: ids[1] for name, ids in searches.items()})


def _counts(tracking_uri: str) -> tuple[int, int]:
    """The store's experiments and runs, deleted ones included."""
    client = MlflowClient(tracking_uri)
    experiments = client.search_experiments(view_type=ViewType.ALL)
    runs = client.search_runs([e.experiment_id for e in experiments], run_view_type=ViewType.ALL,
                              max_results=1000)
    return len(experiments), len(runs)


def test_same_space_uses_every_scored_trial_with_its_values_and_score(store: Store) -> None:
    warm = read_warm_start("base", _space(), store.tracking_uri)
    assert warm.source_run_ids == (store.searches["base"],)
    assert [(values, score) for values, score in warm.trials] == BASE_USED
    assert dict(warm.skipped) == {"without a score": 6}
    assert warm.summary() == "warm start: 4 of 10 trials of 1 earlier search used; skipped: 6 without a score"


def test_best_ranks_by_mode_and_lists_a_point_once(store: Store) -> None:
    warm = read_warm_start("base", _space(), store.tracking_uri)
    first, second, third = BASE_USED[1][0], BASE_USED[2][0], BASE_USED[0][0]
    assert warm.best(2, "max") == [first, second]
    assert warm.best(10, "min") == [third, second, first]  # the repeat of first (0.8) is first's
    assert warm.best(0, "max") == []
    with pytest.raises(ValueError, match="mode"):
        warm.best(1, "up")


@pytest.mark.parametrize("source", ["name", "id", "parent run", "trial run"])
def test_source_is_an_experiment_name_or_id_or_a_search_or_trial_run(store: Store, source: str) -> None:
    given = {"name": "base", "id": store.experiment_ids["base"], "parent run": store.searches["base"],
             "trial run": store.trial_run_ids["base"][3]}[source]
    warm = read_warm_start(given, _space(), store.tracking_uri)
    assert warm.source_run_ids == (store.searches["base"],)
    assert list(warm.trials) == BASE_USED


CHANGED_SPACES = {
    "narrower lr": (
        {"params": {"lr": {"type": "float", "low": 0.001, "high": 0.01}}},
        [0, 2], {"without a score": 6, "with lr outside the space": 2}),
    "fixed then, searched now": (
        {"config": {"epochs": None}, "params": {"epochs": {"type": "int", "low": 1, "high": 8}}},
        [0, 1, 2, 3], {"without a score": 6}),
    "fixed then, now searched without it": (
        {"config": {"optimizer": None}, "params": {"optimizer": {"type": "categorical", "choices": ["sgd"]}}},
        [], {"without a score": 6, "with optimizer outside the space": 4}),
    "a param never seen": (
        {"params": {"width": {"type": "int", "low": 8, "high": 64}}},
        [], {"without a score": 6, "with no value for width": 4}),
    "searched then, fixed now": (
        {"config": {"depth": 6}, "params": {"depth": None}},
        [1, 3], {"without a score": 6, "with depth other than the fixed 6": 2}),
    "searched then, dropped now": (
        {"params": {"depth": None}}, [0, 1, 2, 3], {"without a score": 6}),
}


@pytest.mark.parametrize(("changes", "used", "skipped"), CHANGED_SPACES.values(), ids=CHANGED_SPACES.keys())
def test_a_changed_space_uses_the_trials_that_fit_it(store: Store, changes: dict[str, Any], used: list[int],
                                                    skipped: dict[str, int]) -> None:
    space = _space(**changes)
    warm = read_warm_start("base", space, store.tracking_uri)
    fixed = {key: value for key, value in BASE["config"].items() if key in space.param_names}
    expected = [({name: {**BASE_USED[i][0], **fixed}[name] for name in space.param_names}, BASE_USED[i][1])
                for i in used]
    assert list(warm.trials) == expected
    assert all(space.contains(values) for values, _ in warm.trials)
    assert dict(warm.skipped) == skipped
    reasons = ", ".join(f"{n} {reason}" for reason, n in skipped.items())
    assert warm.summary() == (f"warm start: {len(used)} of 10 trials of 1 earlier search used; "
                              f"skipped: {reasons}")


def test_a_searched_param_takes_the_value_the_earlier_search_fixed(store: Store) -> None:
    space = _space(config={"epochs": None}, params={"epochs": {"type": "float", "low": 1, "high": 8}})
    warm = read_warm_start("base", space, store.tracking_uri)
    assert [values["epochs"] for values, _ in warm.trials] == [4.0] * 4
    assert all(type(values["epochs"]) is float for values, _ in warm.trials)


def test_incomparable_searches_are_skipped_whole_and_another_trainable_is_not_read(store: Store) -> None:
    warm = read_warm_start("mixed", _space(), store.tracking_uri)
    names = ("mixed", "val_loss", "smoke", "epochs", "min", "no_space")
    assert warm.source_run_ids == tuple(store.searches[name] for name in names)
    assert list(warm.trials) == [({"lr": 0.02, "depth": 3, "kind": "b"}, 0.4),
                                 ({"lr": 0.03, "depth": 5, "kind": "a"}, 0.3)]
    assert dict(warm.skipped) == {"of a search that minimised val_loss": 2, "of a --smoke search": 1,
                                  "of a search with epochs 8 (here 4)": 1,
                                  "of a search that minimised score": 1,
                                  f"of a search whose {Artifacts.SPACE} cannot be read": 1}
    assert warm.summary().startswith("warm start: 2 of 8 trials of 6 earlier searches used; skipped: 2 of a ")


def test_a_smoke_search_reads_only_smoke_searches(store: Store) -> None:
    warm = read_warm_start("mixed", _space(), store.tracking_uri, smoke=True)
    assert list(warm.trials) == [({"lr": 0.01, "depth": 2, "kind": "a"}, 0.6)]
    assert warm.skipped["of a search without --smoke"] == 4  # mixed's 2, epochs' 1, no_space's 1


def test_reading_writes_nothing(store: Store) -> None:
    before = _counts(store.tracking_uri)
    for source in ("base", "mixed", store.searches["base"]):
        read_warm_start(source, _space(), store.tracking_uri)
    assert _counts(store.tracking_uri) == before


def _refusal(store: Store, source: str, space: SearchSpace) -> str:
    """The one-line ConfigError of reading ``source``, after which the store holds what it held."""
    before = _counts(store.tracking_uri)
    with pytest.raises(ConfigError) as refused:
        read_warm_start(source, space, store.tracking_uri)
    assert _counts(store.tracking_uri) == before
    message = str(refused.value)
    assert "\n" not in message and message.startswith("--warm-start: ")
    return message


@pytest.mark.parametrize("source", ["nope", "12345", "0" * 32])
def test_an_unknown_source_is_refused(store: Store, source: str) -> None:
    assert _refusal(store, source, _space()) == (
        f"--warm-start: no experiment or search run {source!r} in {store.tracking_uri}")


def test_a_source_without_a_search_is_refused(store: Store) -> None:
    assert _refusal(store, "empty", _space()) == (
        f"--warm-start: experiment 'empty' in {store.tracking_uri} holds no search")
    comparison = store.searches["comparison"]  # a run, but no search's or trial's
    assert _refusal(store, comparison, _space()) == (
        f"--warm-start: no experiment or search run {comparison!r} in {store.tracking_uri}")


def test_another_trainables_searches_are_refused(store: Store) -> None:
    vit = _space(trainable="vit")
    assert _refusal(store, "base", vit) == "--warm-start: experiment 'base' holds searches of trainable " \
                                           "'sklearn', not 'vit'"
    parent = store.searches["base"]
    assert _refusal(store, parent, vit) == f"--warm-start: run {parent!r} is a search of trainable " \
                                           "'sklearn', not 'vit'"
    assert _refusal(store, "mixed", _space(trainable="gan")) == (
        "--warm-start: experiment 'mixed' holds searches of trainable 'sklearn', 'vit', not 'gan'")


def test_a_missing_store_is_refused_and_not_created(tmp_path: Path) -> None:
    tracking_uri = f"sqlite:///{tmp_path / 'none.db'}"
    with pytest.raises(ConfigError) as refused:
        read_warm_start("base", _space(), tracking_uri)
    assert str(refused.value) == f"--warm-start: no MLflow store at {tracking_uri}"
    assert list(tmp_path.iterdir()) == []


def test_typed_params_reads_mlflow_text_back() -> None:
    space = parse_space({**BASE, "params": {
        "lr": {"type": "float", "low": 0.0, "high": 1.0}, "depth": {"type": "int", "low": 1, "high": 8},
        "pick": {"type": "categorical", "choices": [True, 1, None, "a"]}}}, name="tiny")
    for choice in (True, 1, None, "a"):
        values = {"lr": 0.25, "depth": 3, "pick": choice}
        text = {name: param_value(name, value) for name, value in values.items()}
        typed = typed_params(space, {**text, "other": "x"})
        assert typed == values and type(typed["pick"]) is type(choice)
    junk = typed_params(space, {"lr": "fast", "depth": "2.5"})
    assert junk == {"lr": "fast", "depth": "2.5"} and not space.params[0].contains(junk["lr"])


def test_summary_counts_in_words() -> None:
    warm = WarmStart(source_run_ids=("a", "b"), trials=(({"x": 1}, 1.0),), skipped={})
    assert warm.summary() == "warm start: 1 of 1 trial of 2 earlier searches used"


# -- a search rebuilt from its own finished trials (resume without Tune's state) ------------------


def _grid_setup(evaluated: tuple, *, evaluated_here: bool) -> Any:
    from tuneforge.platform.searchers import Budget, setup_search

    space = parse_space({"trainable": "sklearn", "metric": "score", "mode": "max",
                         "params": {"a": {"type": "categorical", "choices": [1, 2, 3]},
                                    "b": {"type": "categorical", "choices": ["x", "y"]}}}, name="grid")
    budget = Budget(trials=None, seed=0, grid_points=3, evaluated=evaluated, evaluated_here=evaluated_here)
    return setup_search("grid", space, budget), setup_search("random", space, budget)


def test_a_rebuilt_search_does_not_run_its_own_finished_trials_again() -> None:
    from tuneforge.platform.searchers import Evaluated

    done = (Evaluated({"a": 2, "b": "y"}, 0.9), Evaluated({"a": 1, "b": "x"}, 0.5))
    grid, random = _grid_setup(done, evaluated_here=True)
    assert grid.n_trials == 4, "the grid's 6 cells less the 2 run before"
    points = grid.make_search_alg(None)._points_to_evaluate
    assert sorted(map(repr, points)) == sorted(repr({"a": a, "b": b}) for a, b in
                                               [(1, "y"), (2, "x"), (3, "x"), (3, "y")])
    assert random.make_search_alg(None)._points_to_evaluate == []
    # A warm start from another search runs their best first, as before.
    grid, random = _grid_setup(done, evaluated_here=False)
    assert grid.n_trials == 8 and random.make_search_alg(None)._points_to_evaluate[0] == {"a": 2, "b": "y"}
