"""The reference for benchmarks/overhead.py: the same search as plain Ray Tune, no tuneforge layer.

Same trainable function, config, search (Tune's random search, seeded), concurrency, actor reuse
and resources as ``tuneforge search ridge-diabetes``; no MLflow, no validation, no progress.
"""

from __future__ import annotations

import argparse

import ray
from ray import tune
from ray.tune.search import BasicVariantGenerator

from tuneforge.trainables.sklearn import train_sklearn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--max-concurrent", type=int, required=True)
    parser.add_argument("--storage", required=True)
    args = parser.parse_args()

    ray.init(address="local", log_to_driver=False)
    param_space = {
        "estimator": "sklearn.linear_model.Ridge", "dataset": "diabetes", "cv": 5, "scoring": "neg_rmse",
        "alpha": tune.loguniform(1e-4, 1e2), "fit_intercept": tune.choice([True, False]),
    }
    tuner = tune.Tuner(
        tune.with_resources(train_sklearn, {"cpu": 1.0, "gpu": 0.0}),
        param_space=param_space,
        tune_config=tune.TuneConfig(metric="cv_neg_rmse", mode="max", num_samples=args.trials,
                                    reuse_actors=True,
                                    search_alg=BasicVariantGenerator(random_state=args.seed,
                                                                     max_concurrent=args.max_concurrent)),
        run_config=tune.RunConfig(storage_path=args.storage, verbose=0),
    )
    results = tuner.fit()
    assert len(results) == args.trials and not results.errors, results.errors
    ray.shutdown()


if __name__ == "__main__":
    main()
