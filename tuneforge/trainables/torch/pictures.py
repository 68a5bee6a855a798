"""Pictures the torch families write as artifacts (matplotlib, off-screen)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["confusion_matrix_png"]


def confusion_matrix_png(labels: np.ndarray, predicted: np.ndarray, class_names: Sequence[str],
                         path: Path, *, title: str) -> None:
    """A confusion matrix (rows: true class, columns: predicted; counts) as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    size = max(4.0, 0.45 * len(class_names) + 2.0)
    figure, axes = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay.from_predictions(labels, predicted, labels=range(len(class_names)),
                                            display_labels=list(class_names), ax=axes,
                                            colorbar=False, xticks_rotation="vertical")
    axes.set_title(f"{title}: accuracy {np.mean(labels == predicted):.4f}")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
