"""The DARTS supernet (Liu, Simonyan & Yang, ICLR 2019, section 2.1-2.2): every edge of a cell
is a softmax-weighted mix of all candidate operations.

Shapes: N images, C_in image channels, S side; ``C`` a cell's channels per node, ``E`` edges per
cell (14 for 4 nodes), ``K`` candidate ops. The architecture parameters ``alphas_normal`` and
``alphas_reduce`` (E, K) are shared by all cells of their kind; :meth:`Supernet.arch_parameters`
and :meth:`Supernet.weights` keep them apart from the network's weights, which two different
optimisers train (:mod:`.architect`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tuneforge._checks import check_positive_ints
from tuneforge.errors import ConfigError
from tuneforge.trainables.darts.genotypes import Genotype, derive, n_edges
from tuneforge.trainables.darts.operations import OPS, PRIMITIVES, FactorizedReduce, ReLUConvBN

__all__ = ["MixedOp", "SearchCell", "Supernet", "SupernetConfig", "check_network_shape", "reduction_layers"]


@dataclass(frozen=True)
class SupernetConfig:
    """The supernet's shape. The paper's CIFAR-10 search uses 16 channels and 8 cells; the
    defaults are smaller so that a CPU epoch takes minutes, not hours."""

    channels: int = 8
    layers: int = 5
    """Cells; the ones at layers // 3 and 2 * layers // 3 are reduction cells (side halved,
    channels doubled), the rest normal."""
    steps: int = 4
    """Intermediate nodes per cell."""
    stem_multiplier: int = 3
    stem_stride: int = 1
    """2 halves the side in the stem (28x28 images enter the cells at 14x14): about 4x less
    compute, which a CPU needs; 1 is the paper's CIFAR-10 stem."""
    image_size: int = 28
    in_channels: int = 1
    n_classes: int = 10

    def __post_init__(self) -> None:
        check_network_shape(self, ("channels", "layers", "steps", "stem_multiplier", "image_size",
                                   "in_channels", "n_classes"))


def check_network_shape(config: Any, positive: tuple[str, ...]) -> None:
    """The checks a supernet's and a discrete network's config share: the ``positive`` fields are
    positive integers, ``stem_stride`` is 1 or 2, ``channels`` is even. ConfigError naming the field."""
    check_positive_ints(config, positive)
    if config.stem_stride not in (1, 2) or isinstance(config.stem_stride, bool):
        raise ConfigError(f"stem_stride: {config.stem_stride!r} is not allowed; it must be 1 or 2")
    if config.channels % 2:
        raise ConfigError(f"channels: {config.channels} is not allowed; it must be even (a reduction "
                         "halves the side with two convolutions of channels / 2)")


def reduction_layers(layers: int) -> frozenset[int]:
    """The cells that halve the side: at a third and two thirds of the depth (the paper's)."""
    return frozenset({layers // 3, 2 * layers // 3})


class MixedOp(nn.Module):
    """One edge: ``sum_k w_k op_k(x)`` over every candidate op (the paper's eq. 1)."""

    def __init__(self, c: int, stride: int) -> None:
        super().__init__()
        self.ops = nn.ModuleList(OPS[name](c, stride, False) for name in PRIMITIVES)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:  # weights (K,)
        return sum(w * op(x) for w, op in zip(weights, self.ops, strict=True))


class SearchCell(nn.Module):
    """A supernet cell: two inputs made ``C`` channels wide (a factorized reduce when the previous
    cell halved the side, so both inputs have one side), then ``steps`` nodes, each the sum of
    a :class:`MixedOp` from every earlier state; the output concatenates the nodes (4C)."""

    def __init__(self, steps: int, c_prev_prev: int, c_prev: int, c: int, *, reduction: bool,
                 reduction_prev: bool) -> None:
        super().__init__()
        self.steps, self.reduction = steps, reduction
        self.preprocess0 = (FactorizedReduce(c_prev_prev, c, affine=False) if reduction_prev
                            else ReLUConvBN(c_prev_prev, c, 1, 1, 0, affine=False))
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList(MixedOp(c, 2 if reduction and j < 2 else 1)
                                   for i in range(steps) for j in range(2 + i))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]  # each (N, C, S', S')
        offset = 0
        for _ in range(self.steps):
            states.append(sum(self.edges[offset + j](h, weights[offset + j]) for j, h in enumerate(states)))
            offset += len(states) - 1
        return torch.cat(states[2:], dim=1)  # (N, steps * C, S', S')


class Supernet(nn.Module):
    """Stem, ``layers`` search cells, global average pooling and a linear classifier; images
    (N, C_in, S, S), standardised, in; logits (N, n_classes) out."""

    def __init__(self, config: SupernetConfig) -> None:
        super().__init__()
        self.config = config
        c, steps = config.channels, config.steps
        c_stem = config.stem_multiplier * c
        self.stem = nn.Sequential(nn.Conv2d(config.in_channels, c_stem, 3, stride=config.stem_stride,
                                            padding=1, bias=False),
                                  nn.BatchNorm2d(c_stem))
        c_prev_prev, c_prev, reduction_prev = c_stem, c_stem, False
        self.cells = nn.ModuleList()
        for layer in range(config.layers):
            reduction = layer in reduction_layers(config.layers)
            c = 2 * c if reduction else c
            self.cells.append(SearchCell(steps, c_prev_prev, c_prev, c, reduction=reduction,
                                         reduction_prev=reduction_prev))
            c_prev_prev, c_prev, reduction_prev = c_prev, steps * c, reduction
        self.classifier = nn.Linear(c_prev, config.n_classes)
        shape = (n_edges(steps), len(PRIMITIVES))
        # Near-uniform at the start (the paper's 1e-3 * N(0, 1)), drawn from torch's seeded RNG.
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(shape))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(shape))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        normal, reduce = F.softmax(self.alphas_normal, dim=-1), F.softmax(self.alphas_reduce, dim=-1)
        s0 = s1 = self.stem(images)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, reduce if cell.reduction else normal)
        return self.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1))

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture: ``alphas_normal`` and ``alphas_reduce``, each (E, K)."""
        return [self.alphas_normal, self.alphas_reduce]

    def weights(self) -> Iterator[nn.Parameter]:
        """Every parameter but the architecture's: what the weight optimiser trains."""
        arch = {id(p) for p in self.arch_parameters()}
        return (p for p in self.parameters() if id(p) not in arch)

    def arch_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """The softmaxed architecture weights, normal and reduce, each (E, K)."""
        with torch.no_grad():
            return tuple(F.softmax(a.float(), dim=-1).cpu().numpy() for a in self.arch_parameters())

    def genotype(self) -> Genotype:
        """The discrete architecture the current weights derive (:func:`.genotypes.derive`)."""
        return derive(*self.arch_weights(), steps=self.config.steps)
