from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tuneforge.errors import ConfigError
from tuneforge.search_spaces import load_space
from tuneforge.trainables.sklearn.trainable import metrics, prepare


def _with_config(name: str, **changes) -> object:
    space = load_space(name)
    return dataclasses.replace(space, config={**space.config, **changes})


def test_scoring_follows_the_metric_and_aliases_resolve() -> None:
    config = prepare(load_space("ridge-diabetes"))
    assert config["scoring"] == "neg_rmse" and config["cv"] == 5
    assert metrics(config) == {"cv_neg_rmse", "cv_neg_rmse_std", "fit_time_s", "score_time_s"}


BAD = {
    "unknown searched param": (dataclasses.replace(load_space("rf-digits"), params=(
        dataclasses.replace(load_space("rf-digits").params[0], name="n_trees"),)),
        "'n_trees' is not a parameter of RandomForestClassifier"),
    "unknown fixed setting": (_with_config("rf-digits", colour="red"), "'colour' is not a parameter"),
    "bad folds": (_with_config("rf-digits", cv=1), "config.cv: expected an integer number of folds >= 2"),
    "unknown scorer": (_with_config("rf-digits", scoring="accuracy_score"),
                       "scoring: 'accuracy_score' is not a scikit-learn scorer"),
    "missing dataset file": (_with_config("rf-digits", dataset={"path": "/nonexistent/d.csv", "target": "y"}),
                             "/nonexistent/d.csv does not exist"),
}


@pytest.mark.parametrize(("space", "message"), BAD.values(), ids=BAD.keys())
def test_prepare_rejects_bad_config_with_one_message(space, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        prepare(space)


def test_csv_dataset_runs_end_to_end_in_prepare(tmp_path: Path) -> None:
    rows = "\n".join(f"{i},{i % 3},{i % 2}" for i in range(30))
    (tmp_path / "d.csv").write_text("a,b,label\n" + rows + "\n")
    space = dataclasses.replace(_with_config("rf-digits", dataset={"path": "d.csv", "target": "label"}),
                                source=tmp_path / "space.yaml")
    assert prepare(space)["dataset"] == {"path": str(tmp_path / "d.csv"), "target": "label"}
