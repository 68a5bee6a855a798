"""Pictures the torch families write as artifacts (matplotlib, off-screen)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["confusion_matrix_png", "image_grid_png"]


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


def image_grid_png(images: np.ndarray, rows: int, path: Path, *, title: str,
                   row_names: Sequence[str] | None = None) -> None:
    """``images`` (N, C, H, W) in [0, 1], N a multiple of ``rows``, tiled ``rows`` high with a
    1-pixel gap, as a PNG at ``path`` (grey for C = 1); ``row_names`` label the rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, channels, height, width = images.shape
    columns = n // rows
    tiles = np.ones((rows * (height + 1) + 1, columns * (width + 1) + 1, channels), dtype=np.float32)
    for i, image in enumerate(np.clip(images, 0.0, 1.0)):
        top, left = 1 + (i // columns) * (height + 1), 1 + (i % columns) * (width + 1)
        tiles[top:top + height, left:left + width] = image.transpose(1, 2, 0)
    scale = max(2.0, 448 / tiles.shape[1])  # every image pixel at least 2 screen pixels
    figure, axes = plt.subplots(figsize=(tiles.shape[1] * scale / 80 + (1.2 if row_names else 0.2),
                                         tiles.shape[0] * scale / 80 + 0.5))
    axes.imshow(tiles[..., 0] if channels == 1 else tiles, cmap="gray" if channels == 1 else None,
                vmin=0.0, vmax=1.0, interpolation="nearest")
    axes.set_xticks([])
    if row_names:
        axes.set_yticks([1 + r * (height + 1) + height / 2 for r in range(rows)], labels=list(row_names))
    else:
        axes.set_yticks([])
    axes.set_title(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
