"""The DARTS supernet (Liu, Simonyan & Yang, ICLR 2019, section 2.1-2.2): every edge of a cell
is a softmax-weighted mix of all candidate operations.

Shapes: N images, C_in image channels, S side; ``C`` a cell's channels per node, ``E`` edges per
cell (14 for 4 nodes), ``K`` candidate ops. The architecture parameters ``alphas_normal`` and
``alphas_reduce`` (E, K) are shared by all cells of their kind; :meth:`Supernet.arch_parameters`
and :meth:`Supernet.weights` keep them apart from the network's weights, which two different
optimisers train (:mod:`.architect`).

PC-DARTS (Xu et al., ICLR 2020), with ``partial_channels`` P > 1: each edge sends only its first
C/P channels through the candidate ops and passes the rest by (max-pooled, on a reducing edge),
then shuffles the channels (groups of P), so a step costs about 1/P of the ops' memory and time;
and edge normalisation: each node weighs its incoming edges by a softmax of ``betas_normal`` /
``betas_reduce`` (E,), which stabilises the edge choice that partial channels make noisy. The
derivation then ranks a node's edges by ``softmax(alpha) * softmax(beta)`` (the paper's), which
:meth:`Supernet.arch_weights` returns. P = 1 is DARTS.
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

__all__ = ["MixedOp", "SearchCell", "Supernet", "SupernetConfig", "channel_shuffle", "check_network_shape",
           "reduction_layers"]


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
    partial_channels: int = 1
    """PC-DARTS' P: 1/P of each edge's channels go through its ops, with edge normalisation
    (the module's notes); 1 is DARTS, the PC-DARTS paper uses 4. Divides ``channels``."""

    def __post_init__(self) -> None:
        check_network_shape(self, ("channels", "layers", "steps", "stem_multiplier", "image_size",
                                   "in_channels", "n_classes", "partial_channels"))
        if self.channels % self.partial_channels:
            raise ConfigError(f"partial_channels: {self.partial_channels} does not divide channels "
                              f"{self.channels}; choose a divisor of it (PC-DARTS uses 4)")


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


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(N, C, H, W) with its channels interleaved from ``groups`` groups (ShuffleNet's): channel
    g * C/groups + i moves to i * groups + g."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class MixedOp(nn.Module):
    """One edge: ``sum_k w_k op_k(x)`` over every candidate op (the paper's eq. 1); with
    ``partial`` P > 1, over the first C/P channels only, the rest passed by (PC-DARTS)."""

    def __init__(self, c: int, stride: int, partial: int = 1) -> None:
        super().__init__()
        self.partial = partial
        self.ops = nn.ModuleList(OPS[name](c // partial, stride, False) for name in PRIMITIVES)
        # The channels passed by are halved in side as the ops' output (ceil, as theirs).
        self.bypass = nn.MaxPool2d(2, 2, ceil_mode=True) if stride == 2 else nn.Identity()

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:  # weights (K,)
        if self.partial == 1:
            return sum(w * op(x) for w, op in zip(weights, self.ops, strict=True))
        through = x.shape[1] // self.partial
        mixed = sum(w * op(x[:, :through]) for w, op in zip(weights, self.ops, strict=True))
        return channel_shuffle(torch.cat([mixed, self.bypass(x[:, through:])], dim=1), self.partial)


class SearchCell(nn.Module):
    """A supernet cell: two inputs made ``C`` channels wide (a factorized reduce when the previous
    cell halved the side, so both inputs have one side), then ``steps`` nodes, each the sum of
    a :class:`MixedOp` from every earlier state; the output concatenates the nodes (4C)."""

    def __init__(self, steps: int, c_prev_prev: int, c_prev: int, c: int, *, reduction: bool,
                 reduction_prev: bool, partial: int = 1) -> None:
        super().__init__()
        self.steps, self.reduction = steps, reduction
        self.preprocess0 = (FactorizedReduce(c_prev_prev, c, affine=False) if reduction_prev
                            else ReLUConvBN(c_prev_prev, c, 1, 1, 0, affine=False))
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList(MixedOp(c, 2 if reduction and j < 2 else 1, partial)
                                   for i in range(steps) for j in range(2 + i))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor,
                edge_weights: torch.Tensor | None = None) -> torch.Tensor:
        """``weights`` (E, K) the ops' of each edge; ``edge_weights`` (E,) each edge's share of its
        node's sum (PC-DARTS' edge normalisation; None: every edge counts once)."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]  # each (N, C, S', S')
        offset = 0
        for _ in range(self.steps):
            edges = [self.edges[offset + j](h, weights[offset + j]) for j, h in enumerate(states)]
            if edge_weights is not None:
                edges = [edge_weights[offset + j] * edge for j, edge in enumerate(edges)]
            states.append(sum(edges))
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
                                         reduction_prev=reduction_prev, partial=config.partial_channels))
            c_prev_prev, c_prev, reduction_prev = c_prev, steps * c, reduction
        self.classifier = nn.Linear(c_prev, config.n_classes)
        shape = (n_edges(steps), len(PRIMITIVES))
        # Near-uniform at the start (the paper's 1e-3 * N(0, 1)), drawn from torch's seeded RNG.
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(shape))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(shape))
        self.edge_normalisation = config.partial_channels > 1
        if self.edge_normalisation:  # PC-DARTS' betas, near-uniform as the alphas
            self.betas_normal = nn.Parameter(1e-3 * torch.randn(shape[0]))
            self.betas_reduce = nn.Parameter(1e-3 * torch.randn(shape[0]))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        normal, reduce = F.softmax(self.alphas_normal, dim=-1), F.softmax(self.alphas_reduce, dim=-1)
        edges = ((self._edge_weights(self.betas_normal), self._edge_weights(self.betas_reduce))
                 if self.edge_normalisation else (None, None))
        s0 = s1 = self.stem(images)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, *((reduce, edges[1]) if cell.reduction else (normal, edges[0])))
        return self.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1))

    def _edge_weights(self, betas: torch.Tensor) -> torch.Tensor:
        """(E,): a softmax of ``betas`` over each node's incoming edges (2, 3, 4, ... of them)."""
        shares, start = [], 0
        for node in range(self.config.steps):
            shares.append(F.softmax(betas[start:start + 2 + node], dim=-1))
            start += 2 + node
        return torch.cat(shares)

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture: ``alphas_normal`` and ``alphas_reduce``, each (E, K); with edge
        normalisation also ``betas_normal`` and ``betas_reduce``, each (E,)."""
        alphas = [self.alphas_normal, self.alphas_reduce]
        return [*alphas, self.betas_normal, self.betas_reduce] if self.edge_normalisation else alphas

    def weights(self) -> Iterator[nn.Parameter]:
        """Every parameter but the architecture's: what the weight optimiser trains."""
        arch = {id(p) for p in self.arch_parameters()}
        return (p for p in self.parameters() if id(p) not in arch)

    def arch_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """The softmaxed architecture weights, normal and reduce, each (E, K); with edge
        normalisation, each edge's row times its share of its node (what the derivation ranks)."""
        with torch.no_grad():
            weights = [F.softmax(a.float(), dim=-1) for a in (self.alphas_normal, self.alphas_reduce)]
            if self.edge_normalisation:
                weights = [w * self._edge_weights(b.float())[:, None]
                           for w, b in zip(weights, (self.betas_normal, self.betas_reduce), strict=True)]
            return tuple(w.cpu().numpy() for w in weights)

    def genotype(self) -> Genotype:
        """The discrete architecture the current weights derive (:func:`.genotypes.derive`)."""
        return derive(*self.arch_weights(), steps=self.config.steps)
