from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.conftest import write_space
from tuneforge.errors import ConfigError
from tuneforge.search_spaces import (
    CategoricalParam,
    FloatParam,
    IntParam,
    bundled_spaces,
    load_space,
)

VALID = """\
trainable: sklearn
metric: cv_accuracy
mode: max
config:
  estimator: sklearn.ensemble.RandomForestClassifier
  dataset: digits
params:
  n_estimators: {type: int, low: 10, high: 300, log: true}
  max_depth: {type: int, low: 2, high: 32, step: 2}
  max_features: {type: categorical, choices: [sqrt, log2, null]}
  min_samples_leaf: {type: float, low: 1.0e-4, high: 0.1, log: true}
  ccp_alpha: {type: float, low: 0.0, high: 0.5, step: 0.1}
"""


def test_valid_space_parses_every_kind_of_param(tmp_path: Path) -> None:
    space = load_space(write_space(tmp_path, VALID))
    assert space.name == "space"
    assert (space.trainable, space.metric, space.mode) == ("sklearn", "cv_accuracy", "max")
    assert space.config == {"estimator": "sklearn.ensemble.RandomForestClassifier", "dataset": "digits"}
    assert space.params == (
        IntParam("n_estimators", 10, 300, log=True),
        IntParam("max_depth", 2, 32, step=2),
        CategoricalParam("max_features", ("sqrt", "log2", None)),
        FloatParam("min_samples_leaf", 1e-4, 0.1, log=True),
        FloatParam("ccp_alpha", 0.0, 0.5, step=0.1),
    )
    assert space.n_dims == 1 + 1 + 3 + 1 + 1


def test_yaml_1_1_exponent_strings_are_numbers(tmp_path: Path) -> None:
    text = VALID.replace("low: 1.0e-4", "low: 1e-4")  # PyYAML reads 1e-4 as a string
    assert load_space(write_space(tmp_path, text)).params[3].low == 1e-4


def test_explicit_grid_is_kept(tmp_path: Path) -> None:
    text = VALID.replace("{type: float, low: 0.0, high: 0.5, step: 0.1}",
                         "{type: float, low: 0.0, high: 0.5, grid: [0, 0.2, 0.5]}")
    assert load_space(write_space(tmp_path, text)).params[4].grid == (0.0, 0.2, 0.5)


def test_bundled_spaces_all_load() -> None:
    names = set(bundled_spaces())
    assert {"rf-digits", "svc-wine", "gbt-breast-cancer", "ridge-diabetes"} <= names
    for name in names:
        space = load_space(name)
        assert space.name == name and space.params and space.description


def _replace(old: str, new: str) -> str:
    assert old in VALID, old
    return VALID.replace(old, new)


BAD_SPACES = {
    "invalid yaml": ("params: [unclosed", "invalid YAML"),
    "not a mapping": ("- just\n- a list\n", "expected a mapping"),
    "unknown top-level key": (VALID + "budget: 3\n", "unknown key 'budget'"),
    "missing metric": (_replace("metric: cv_accuracy\n", ""), "missing required key 'metric'"),
    "bad mode": (_replace("mode: max", "mode: maximise"), "mode: 'maximise' is not one of"),
    "unknown type": (_replace("{type: int, low: 2, high: 32, step: 2}", "{type: integer, low: 2, high: 3}"),
                     "params.max_depth: type: 'integer' is not one of"),
    "unknown param key": (_replace("high: 32, step: 2}", "high: 32, steps: 2}"),
                          "params.max_depth: unknown key 'steps'"),
    "low > high": (_replace("low: 2, high: 32", "low: 32, high: 2"), "params.max_depth: low (32) > high (2)"),
    "log with low 0": (_replace("low: 1.0e-4, high: 0.1", "low: 0, high: 0.1"),
                       "params.min_samples_leaf: log: true needs low > 0"),
    "empty choices": (_replace("choices: [sqrt, log2, null]", "choices: []"),
                      "params.max_features: choices: expected a non-empty list"),
    "duplicate choices": (_replace("choices: [sqrt, log2, null]", "choices: [sqrt, sqrt]"),
                          "duplicate values"),
    "non-number bound": (_replace("low: 10, high: 300", "low: ten, high: 300"),
                         "params.n_estimators: low: expected a finite number, got 'ten'"),
    "fractional int bound": (_replace("low: 10, high: 300", "low: 10.5, high: 300"),
                             "low: expected an integer"),
    "step not dividing range": (_replace("step: 0.1", "step: 0.3"), "not a multiple of step"),
    "log and step": (_replace("high: 300, log: true", "high: 300, log: true, step: 5"),
                     "log and step cannot be combined"),
    "grid value out of range": (_replace("high: 32, step: 2}", "high: 32, step: 2, grid: [2, 40]}"),
                                "grid: 40 is outside"),
    "float low == high": (_replace("low: 0.0, high: 0.5", "low: 0.5, high: 0.5"), "low == high"),
    "param also in config": (_replace("dataset: digits", "dataset: digits\n  max_depth: 3"),
                             "['max_depth'] set both in config and in params"),
    "no params": (VALID.split("params:")[0] + "params: {}\n", "params: expected a non-empty mapping"),
}


@pytest.mark.parametrize(("text", "message"), BAD_SPACES.values(), ids=BAD_SPACES.keys())
def test_bad_space_is_one_clear_error_naming_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write_space(tmp_path, textwrap.dedent(text))
    with pytest.raises(ConfigError) as caught:
        load_space(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_file_lists_the_bundled_spaces(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no-such\.yaml: no such space file or bundled space; "
                                          r"bundled: .*rf-digits"):
        load_space(tmp_path / "no-such.yaml")


@pytest.mark.parametrize("name", sorted(bundled_spaces()))
def test_space_document_parses_back_to_the_same_space(name: str) -> None:
    from tuneforge.search_spaces import parse_space, space_document

    space = load_space(name)
    again = parse_space(space_document(space), name=space.name, source=space.source)
    assert again == space


def test_space_document_round_trips_every_param_kind(tmp_path: Path) -> None:
    from tuneforge.search_spaces import parse_space, space_document

    space = load_space(write_space(tmp_path, VALID.replace(
        "{type: float, low: 0.0, high: 0.5, step: 0.1}", "{type: float, low: 0.0, high: 2.0, step: 1.0}")))
    assert parse_space(space_document(space), name="space", source=space.source) == space


def test_strict_yaml_still_reads_anchors_merges_and_dates(tmp_path: Path) -> None:
    """What the strict loader must keep: a merge's keys overridden beside it (no duplicate), an
    alias used many times within the limit, and the scalars YAML 1.1 resolves."""
    from tuneforge.search_spaces import read_yaml

    path = tmp_path / "doc.yaml"
    path.write_text("base: &base {low: 1, high: 2}\n"
                    "merged: {<<: *base, high: 3}\n"
                    "many: [" + ", ".join(["*base"] * 500) + "]\n"
                    "when: 2001-01-02\n")
    document = read_yaml(path)
    assert document["merged"] == {"low": 1, "high": 3}
    assert len(document["many"]) == 500 and document["many"][0] == {"low": 1, "high": 2}
    assert str(document["when"]) == "2001-01-02"


@pytest.mark.parametrize(("text", "message"), [
    ("a: 1\nb: 2\na: 3\n", "(line 3): duplicate key 'a'"),
    ("a: {x: 1, y: 2, x: 1}\n", "(line 1): duplicate key 'x'"),
    ("a: " + "[" * 21 + "]" * 21 + "\n", "(line 1): nested deeper than 20 levels"),
    ("a: &a [*a]\n", "an alias refers to a collection that contains it"),
    ("a: 2001-02-30\n", "cannot read '2001-02-30' as timestamp (day is out of range for month)"),
])
def test_strict_yaml_refuses_with_the_line(tmp_path: Path, text: str, message: str) -> None:
    from tuneforge.search_spaces import read_yaml

    path = tmp_path / "doc.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        read_yaml(path)
    assert str(caught.value).startswith(f"{path}: invalid YAML") and message in str(caught.value)
