"""DARTS' pictures: a genotype's two cells as graphs (Graphviz, as the DARTS repository draws them),
and the softmaxed architecture weights as heat maps (matplotlib, off-screen)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def _cell_graph(graph: Any, pairs: Cell, concat: tuple[int, ...], kind: str) -> None:
    """One cell into ``graph`` as the DARTS repository's ``visualize.py`` draws it: the two input
    states, the intermediate nodes, the output; each edge labelled with its op. Node names carry
    ``kind`` so that both cells fit in one graph."""
    def node(state: int) -> str:
        return f"{kind}_{state}"

    with graph.subgraph(name=f"cluster_{kind}") as cell:
        cell.attr(label=f"{kind} cell", fontsize="16", style="rounded", color="grey70")
        for state in range(2 + len(pairs) // 2):
            colour = "darkseagreen2" if state < 2 else "lightblue"
            cell.node(node(state), _state_name(state), fillcolor=colour)
        cell.node(node(-1), "c_{k}", fillcolor="palegoldenrod")
        for k, (op, source) in enumerate(pairs):
            cell.edge(node(source), node(2 + k // 2), label=op)
        for state in concat:
            cell.edge(node(state), node(-1), color="grey60")


def cells_png(genotype: Genotype, path: Path, *, title: str) -> bool:
    """The normal and the reduction cell of ``genotype``, one above the other, laid out by
    Graphviz's ``dot`` (no edge crosses a node or a label) as a PNG. False, and no file, where
    Graphviz is not installed (its ``dot`` program is not on the PATH)."""
    import graphviz

    graph = graphviz.Digraph(
        graph_attr={"rankdir": "LR", "label": title, "labelloc": "t", "fontsize": "18", "newrank": "true"},
        node_attr={"style": "filled", "shape": "rect", "fontsize": "14", "penwidth": "1.5"},
        edge_attr={"fontsize": "12", "fontcolor": "navy"})
    # dot stacks left-to-right clusters bottom up: the reduction cell first puts the normal on top
    _cell_graph(graph, genotype.reduce, genotype.reduce_concat, "reduction")
    _cell_graph(graph, genotype.normal, genotype.normal_concat, "normal")
    try:
        png = graph.pipe(format="png")
    except graphviz.ExecutableNotFound:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return True


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
