"""GPSearcher's rule for trials a scheduler stopped early: values on one common budget.

The synthetic benchmark: a validation loss that rises as a model over-fits, so every config's
epoch-1 loss is lower than its final one. ASHA-like histories stop the configs far from the
optimum (x = 0.7) at epoch 1. Taken as full evaluations, their epoch-1 losses would look better
than every final loss, and the search would turn to them.
"""

from __future__ import annotations

import numpy as np

from tuneforge.platform.searchers._gp.stopped import comparable_values
from tuneforge.platform.searchers.gp_searcher import GPSearcher
from tuneforge.search_spaces import FloatParam, SearchSpace

SPACE = SearchSpace(name="curves", trainable="t", metric="val_loss", mode="min",
                    params=(FloatParam("x", 0.0, 1.0),))
EPOCHS = 9
OPTIMUM = 0.7


def _loss(x: float, epoch: int) -> float:
    """Final loss (x - 0.7)^2 + 0.5; 0.6 lower at the start, rising as training goes on."""
    return (x - OPTIMUM) ** 2 + 0.5 - 0.6 * (1 - epoch / EPOCHS)


def test_without_a_scheduler_every_trial_counts_with_its_final_value() -> None:
    curves = [[[1, 0.1], [2, 0.5]], [[1, 0.3], [2, 0.2]], [[1, 0.0], [2, 0.9]]]
    np.testing.assert_array_equal(comparable_values(curves), [0.5, 0.2, 0.9])


def test_trials_count_at_the_highest_rung_enough_reached_and_stopped_ones_as_its_worst() -> None:
    curves = [[[1, 0.9]],                                  # stopped at 1: looks best, is not
              [[1, 0.5], [3, 0.6]],                        # reached rung 3
              [[1, 0.4], [3, 0.7], [9, 0.8]],              # ran to the end
              [[1, 0.6], [3, 0.65], [9, 0.95]]]            # ran to the end
    # Three trials reached iteration 3, two iteration 9: the rung is 3.
    np.testing.assert_allclose(comparable_values(curves, min_trials=3), [0.6, 0.6, 0.7, 0.65])
    # With two enough, the rung is 9; the trials stopped before it count as its worst, 0.8.
    np.testing.assert_allclose(comparable_values(curves, min_trials=2), [0.8, 0.8, 0.8, 0.95])


def _searcher_after(history: list[tuple[float, int]], *, told_iterations: bool) -> GPSearcher:
    """A GPSearcher told ``(x, epochs reached)`` trials through Tune's Searcher calls: each
    intermediate result, then the last as the final one (as Tune does for a stopped trial).
    ``told_iterations`` False hides how far each trial got (the naive reading)."""
    searcher = GPSearcher(SPACE, metric="val_loss", mode="min", seed=0, n_initial_points=len(history),
                          points_to_evaluate=[{"x": x} for x, _ in history])
    for index, (x, reached) in enumerate(history):
        trial = str(index)
        assert searcher.suggest(trial) == {"x": x}
        for epoch in range(1, reached + 1):
            result = {"val_loss": _loss(x, epoch), "training_iteration": epoch if told_iterations else EPOCHS}
            if epoch < reached:
                searcher.on_trial_result(trial, result)
            else:
                searcher.on_trial_complete(trial, result)
    return searcher


# Configs near the optimum ran all 9 epochs; the others were stopped after 1.
HISTORY = [(0.0, 1), (0.1, 1), (0.2, 1), (0.3, 1), (0.4, 1), (0.55, EPOCHS), (0.65, EPOCHS),
           (0.75, EPOCHS), (0.85, EPOCHS), (0.95, 1)]


def test_the_benchmark_misleads_a_searcher_that_takes_stopped_values_as_final() -> None:
    naive = _searcher_after(HISTORY, told_iterations=False)
    suggestions = [naive.suggest(f"next-{i}")["x"] for i in range(3)]
    assert min(suggestions) < 0.45, suggestions  # drawn to the stopped configs' low early losses


def test_gpsearcher_follows_the_trials_that_ran_to_the_end() -> None:
    searcher = _searcher_after(HISTORY, told_iterations=True)
    suggestions = [searcher.suggest(f"next-{i}")["x"] for i in range(3)]
    assert all(0.45 < x < 0.95 for x in suggestions), suggestions
    state = searcher.get_state()
    assert [len(curve) for curve in state["observed_curves"]] == [1 if r == 1 else EPOCHS for _, r in HISTORY]
