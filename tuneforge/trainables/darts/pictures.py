"""DARTS' pictures (matplotlib, off-screen): a genotype's two cells as graphs, and the softmaxed
architecture weights as heat maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tuneforge.trainables.darts.genotypes import Cell, Genotype
from tuneforge.trainables.darts.operations import PRIMITIVES

__all__ = ["alphas_heatmap_png", "cells_png", "edge_names"]

_INPUT_NAMES = ("c_{k-2}", "c_{k-1}")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def edge_names(steps: int) -> list[str]:
    """Row labels of the supernet's edges, in order: ``"node 0 <- c_{k-2}"``, ..."""
    names = []
    for node in range(steps):
        names += [f"node {node} <- {_state_name(j)}" for j in range(2 + node)]
    return names


def _state_name(state: int) -> str:
    return _INPUT_NAMES[state] if state < 2 else f"node {state - 2}"


def _draw_cell(axes: object, pairs: Cell, concat: tuple[int, ...], title: str) -> None:
    """Inputs on the left, nodes left to right in the middle, the output on the right; each edge
    an arrow labelled with its op."""
    steps = len(pairs) // 2
    where = {0: (0.0, 0.8), 1: (0.0, 0.2)}
    for node in range(steps):
        where[2 + node] = (1.0 + node, 0.5 + (0.28 if node % 2 else -0.28))
    output = (2.0 + steps, 0.5)
    for (op, source), k in zip(pairs, range(len(pairs)), strict=True):
        start, end = where[source], where[2 + k // 2]
        axes.annotate("", xy=end, xytext=start, arrowprops={
            "arrowstyle": "-|>", "color": "tab:blue", "shrinkA": 14, "shrinkB": 14})
        along = 0.6 if k % 2 else 0.4  # a node's two labels at different points of their arrows
        label = (start[0] + along * (end[0] - start[0]), start[1] + along * (end[1] - start[1]))
        axes.text(*label, op, fontsize=7, ha="center", va="center", color="tab:blue",
                  bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    for state in concat:
        axes.annotate("", xy=output, xytext=where[state], arrowprops={
            "arrowstyle": "-|>", "color": "0.6", "shrinkA": 14, "shrinkB": 14})
    for state, (x, y) in where.items():
        colour = "lightgreen" if state < 2 else "lightblue"
        axes.text(x, y, _state_name(state), ha="center", va="center", fontsize=8,
                  bbox={"boxstyle": "round", "fc": colour})
    axes.text(*output, "c_{k}", ha="center", va="center", fontsize=8,
              bbox={"boxstyle": "round", "fc": "khaki"})
    axes.set_xlim(-0.6, output[0] + 0.6)
    axes.set_ylim(-0.1, 1.1)
    axes.axis("off")
    axes.set_title(title)


def cells_png(genotype: Genotype, path: Path, *, title: str) -> None:
    """The normal and the reduction cell of ``genotype``, one above the other, as a PNG."""
    plt = _pyplot()
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(2.2 * genotype.steps + 3, 6.5))
    _draw_cell(top, genotype.normal, genotype.normal_concat, "normal cell")
    _draw_cell(bottom, genotype.reduce, genotype.reduce_concat, "reduction cell")
    figure.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def alphas_heatmap_png(normal: np.ndarray, reduce: np.ndarray, path: Path, *, title: str) -> None:
    """Softmaxed architecture weights, each (E, K): one heat map per cell kind, edges by ops,
    every weight written in its square."""
    plt = _pyplot()
    steps = next(s for s in range(1, 64) if sum(2 + i for i in range(s)) == len(normal))
    figure, panels = plt.subplots(1, 2, figsize=(13, 0.32 * len(normal) + 2.5))
    for axes, weights, name in zip(panels, (normal, reduce), ("normal", "reduce"), strict=True):
        low, high = float(weights.min()), float(weights.max())  # early on all are near 1 / K
        image = axes.imshow(weights, cmap="viridis", vmin=low, vmax=max(high, low + 1e-6), aspect="auto")
        for (row, column), value in np.ndenumerate(weights):
            axes.text(column, row, f"{value:.3f}", ha="center", va="center", fontsize=6,
                      color="white" if value < (low + high) / 2 else "black")
        axes.set_xticks(range(len(PRIMITIVES)), labels=list(PRIMITIVES), rotation=60, ha="right", fontsize=7)
        axes.set_yticks(range(len(weights)), labels=edge_names(steps), fontsize=7)
        axes.set_title(f"{name} cell")
        figure.colorbar(image, ax=axes, fraction=0.04)
    figure.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
