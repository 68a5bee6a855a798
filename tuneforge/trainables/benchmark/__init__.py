"""Standard test functions with known optima (Branin, Hartmann, Ackley, Rosenbrock, Levy) as a
trainable, so that searchers can be measured against each other in milliseconds."""

from __future__ import annotations

from tuneforge.trainables._base import Trainable
from tuneforge.trainables.benchmark.functions import FUNCTIONS, TestFunction
from tuneforge.trainables.benchmark.trainable import check, metrics, prepare, train_benchmark

__all__ = ["FUNCTIONS", "TRAINABLE", "TestFunction", "train_benchmark"]

TRAINABLE = Trainable(name="benchmark", function=train_benchmark, prepare=prepare, metrics=metrics,
                      check=check)
