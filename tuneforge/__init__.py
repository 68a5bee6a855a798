"""tuneforge: a Ray-distributed AutoML platform.

Searches run as Ray Tune experiments and land in MLflow. The public API is small::

    import tuneforge
    result = tuneforge.search("rf-digits", algo="random", trials=20)
    result.best_config, result.best_score, result.parent_run_id, result.model_uri
    tuneforge.search("vit-mnist", algo="bayes", trials=8, progress=True)     # a Vision Transformer
    tuneforge.search("my_space.yaml", trainable=my_train_function)          # your own trainable

Importing tuneforge is cheap: Ray, MLflow and torch load when a search needs them.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

__all__ = ["ConfigError", "GPSearcher", "SearchOptions", "SearchResult", "SearchSpace", "__version__",
           "compare", "load_space", "search"]

_LAZY = {
    "search": "tuneforge.platform.runner",
    "SearchOptions": "tuneforge.platform.planning",
    "SearchResult": "tuneforge.platform.runner",
    "SearchSpace": "tuneforge.search_spaces",
    "load_space": "tuneforge.search_spaces",
    "ConfigError": "tuneforge.errors",
    "GPSearcher": "tuneforge.platform.searchers.gp_searcher",
    "compare": "tuneforge.platform.compare",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tuneforge' has no attribute {name!r}")
