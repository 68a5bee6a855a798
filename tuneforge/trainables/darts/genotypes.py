"""Genotypes: a searched architecture as a value, and how one is derived from the supernet.

A cell has ``steps`` intermediate nodes (4 in the paper). Node ``i`` (0-based) takes two inputs
out of ``2 + i`` states: 0 and 1 are the outputs of the previous two cells, ``2 + j`` is
intermediate node ``j``. A :class:`Genotype` lists, for the normal and the reduction cell, the
``(op, input)`` pairs of every node in order (two per node) and the states the cell's output
concatenates: the shape of the DARTS repository's ``genotypes.py``, written as JSON::

    {"normal": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1], ...], "normal_concat": [2, 3, 4, 5],
     "reduce": [["max_pool_3x3", 0], ...], "reduce_concat": [2, 3, 4, 5]}

Glossary of :func:`derive_cell`: ``E = sum(2 + i for i < steps)`` edges (14 for 4 steps), ``K``
candidate ops; ``weights`` (E, K) are the softmaxed architecture weights, edge by edge in node
order (node 0's two edges, node 1's three, ...).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuneforge._checks import is_int
from tuneforge.errors import ConfigError
from tuneforge.trainables.darts.operations import PRIMITIVES

__all__ = ["DARTS_V1", "DARTS_V2", "GENOTYPES", "Genotype", "derive", "derive_cell", "n_edges",
           "random_genotype"]

Cell = tuple[tuple[str, int], ...]
"""A cell's ``(op, input)`` pairs, two per intermediate node."""


def n_edges(steps: int) -> int:
    """Edges of a supernet cell with ``steps`` intermediate nodes: node i has 2 + i inputs."""
    return sum(2 + i for i in range(steps))


@dataclass(frozen=True)
class Genotype:
    """A discrete architecture: what the derivation returns and the network is built from."""

    normal: Cell
    normal_concat: tuple[int, ...]
    reduce: Cell
    reduce_concat: tuple[int, ...]

    @property
    def steps(self) -> int:
        return len(self.normal) // 2

    def to_dict(self) -> dict[str, list[Any]]:
        return {"normal": [list(pair) for pair in self.normal], "normal_concat": list(self.normal_concat),
                "reduce": [list(pair) for pair in self.reduce], "reduce_concat": list(self.reduce_concat)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> Genotype:
        """A genotype from its JSON shape; ConfigError naming the first problem (an unknown op,
        ``none``, an input a node cannot see, a node without exactly two inputs)."""
        if not isinstance(value, Mapping):
            raise ConfigError(f"a genotype is a mapping with normal, normal_concat, reduce and "
                             f"reduce_concat, not {type(value).__name__}")
        missing = [key for key in ("normal", "normal_concat", "reduce", "reduce_concat") if key not in value]
        if missing:
            raise ConfigError(f"a genotype needs {', '.join(missing)}")
        normal, reduce = _cell(value["normal"], "normal"), _cell(value["reduce"], "reduce")
        if len(normal) != len(reduce):
            raise ConfigError(f"normal has {len(normal) // 2} nodes and reduce {len(reduce) // 2}; "
                             "both cells need the same number")
        steps = len(normal) // 2
        return cls(normal, _concat(value["normal_concat"], steps, "normal_concat"),
                   reduce, _concat(value["reduce_concat"], steps, "reduce_concat"))

    @classmethod
    def from_json(cls, text: str) -> Genotype:
        return cls.from_dict(json.loads(text))


def _cell(pairs: Any, where: str) -> Cell:
    if not isinstance(pairs, Sequence) or isinstance(pairs, str) or not pairs or len(pairs) % 2:
        raise ConfigError(f"{where}: expected a non-empty list of [op, input] pairs, two per node")
    cell = []
    for k, pair in enumerate(pairs):
        node = k // 2
        if not (isinstance(pair, Sequence) and len(pair) == 2):
            raise ConfigError(f"{where}[{k}]: expected [op, input], got {pair!r}")
        op, source = pair
        if op not in PRIMITIVES or op == "none":
            valid = ", ".join(p for p in PRIMITIVES if p != "none")
            raise ConfigError(f"{where}[{k}]: unknown op {op!r}; valid: {valid}")
        if not is_int(source) or not 0 <= source < 2 + node:
            raise ConfigError(f"{where}[{k}]: node {node} takes inputs 0..{1 + node}, got {source!r}")
        cell.append((str(op), int(source)))
    return tuple(cell)


def _concat(states: Any, steps: int, where: str) -> tuple[int, ...]:
    valid = range(2, 2 + steps)
    if (not isinstance(states, Sequence) or isinstance(states, str) or not states
            or any(isinstance(s, bool) or s not in valid for s in states)):
        raise ConfigError(f"{where}: expected intermediate states out of {list(valid)}, got {states!r}")
    return tuple(int(s) for s in states)


def derive_cell(weights: np.ndarray, steps: int, primitives: Sequence[str] = PRIMITIVES) -> Cell:
    """The paper's derivation (section 2.4) of one cell from its softmaxed weights (E, K): for
    each node, the two incoming edges whose strongest non-``none`` op weighs most, each with that
    op. Ties go to the earlier edge and the earlier op."""
    weights = np.asarray(weights, dtype=np.float64)
    assert weights.shape == (n_edges(steps), len(primitives)), f"weights {weights.shape}, steps {steps}"
    usable = np.array([name != "none" for name in primitives])
    masked = np.where(usable, weights, -np.inf)  # (E, K)
    cell, start = [], 0
    for node in range(steps):
        rows = masked[start:start + 2 + node]  # (2 + node, K)
        strongest = rows.max(axis=1)
        inputs = sorted(np.argsort(-strongest, kind="stable")[:2])
        cell += [(primitives[int(np.argmax(rows[j]))], int(j)) for j in inputs]
        start += 2 + node
    return tuple(cell)


def derive(normal_weights: np.ndarray, reduce_weights: np.ndarray, steps: int = 4,
           primitives: Sequence[str] = PRIMITIVES) -> Genotype:
    """The genotype of a supernet's softmaxed architecture weights, each (E, K); every
    intermediate node is concatenated into the cell's output, as in the supernet."""
    concat = tuple(range(2, 2 + steps))
    return Genotype(derive_cell(normal_weights, steps, primitives), concat,
                    derive_cell(reduce_weights, steps, primitives), concat)


def random_genotype(rng: np.random.Generator, steps: int = 4,
                    primitives: Sequence[str] = PRIMITIVES) -> Genotype:
    """A genotype drawn uniformly from the space the derivation chooses in (the paper's random
    baseline): per node two distinct inputs, each with any op but ``none``."""
    ops = [name for name in primitives if name != "none"]

    def cell() -> Cell:
        pairs = []
        for node in range(steps):
            for source in sorted(rng.choice(2 + node, size=2, replace=False)):
                pairs.append((ops[int(rng.integers(len(ops)))], int(source)))
        return tuple(pairs)

    concat = tuple(range(2, 2 + steps))
    return Genotype(cell(), concat, cell(), concat)


DARTS_V1 = Genotype.from_dict({
    "normal": [["sep_conv_3x3", 1], ["sep_conv_3x3", 0], ["skip_connect", 0], ["sep_conv_3x3", 1],
               ["skip_connect", 0], ["sep_conv_3x3", 1], ["sep_conv_3x3", 0], ["skip_connect", 2]],
    "normal_concat": [2, 3, 4, 5],
    "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1], ["skip_connect", 2], ["max_pool_3x3", 0],
               ["max_pool_3x3", 0], ["skip_connect", 2], ["skip_connect", 2], ["avg_pool_3x3", 0]],
    "reduce_concat": [2, 3, 4, 5]})
"""The paper's first-order CIFAR-10 cells (the DARTS repository's ``DARTS_V1``)."""

DARTS_V2 = Genotype.from_dict({
    "normal": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1], ["sep_conv_3x3", 0], ["sep_conv_3x3", 1],
               ["sep_conv_3x3", 1], ["skip_connect", 0], ["skip_connect", 0], ["dil_conv_3x3", 2]],
    "normal_concat": [2, 3, 4, 5],
    "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1], ["skip_connect", 2], ["max_pool_3x3", 1],
               ["max_pool_3x3", 0], ["skip_connect", 2], ["skip_connect", 2], ["max_pool_3x3", 1]],
    "reduce_concat": [2, 3, 4, 5]})
"""The paper's second-order CIFAR-10 cells (``DARTS_V2``, 2.76% test error at 3.3M parameters)."""

GENOTYPES: dict[str, Genotype] = {"darts-v1": DARTS_V1, "darts-v2": DARTS_V2}
"""Named genotypes a space may give as ``genotype``."""
