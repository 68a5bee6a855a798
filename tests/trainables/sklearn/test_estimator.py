from __future__ import annotations

import pytest
from sklearn.ensemble import RandomForestClassifier

from tuneforge.errors import ConfigError
from tuneforge.trainables.sklearn.estimator import base_estimator, trial_estimator


def test_trial_estimator_keeps_the_base_settings_it_does_not_search() -> None:
    base = RandomForestClassifier(class_weight="balanced", n_jobs=1, random_state=3)
    trial = trial_estimator(base, {"n_estimators": 7, "max_depth": 4})
    assert trial is not base and base.n_estimators == 100  # the base is never modified
    assert trial.get_params() | {"n_estimators": 7, "max_depth": 4} == trial.get_params()
    assert (trial.class_weight, trial.n_jobs, trial.random_state) == ("balanced", 1, 3)


def test_import_paths_and_pipelines() -> None:
    assert type(base_estimator("sklearn.linear_model.Ridge")).__name__ == "Ridge"
    pipeline = base_estimator(["sklearn.preprocessing.StandardScaler", "sklearn.svm.SVC"])
    trial = trial_estimator(pipeline, {"svc__C": 3.0})
    assert trial.named_steps["svc"].C == 3.0 and "standardscaler" in trial.named_steps


def test_unknown_param_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"'n_trees' is not a parameter of RandomForestClassifier; "
                                          r"valid: .*n_estimators"):
        trial_estimator(RandomForestClassifier(), {"n_trees": 3})


@pytest.mark.parametrize("spec", ["sklearn.ensemble.NoSuchForest", "os.path", "nonexistent.module.X", 42])
def test_a_bad_estimator_path_is_a_config_error(spec) -> None:
    with pytest.raises(ConfigError, match=r"config\.estimator"):
        base_estimator(spec)
