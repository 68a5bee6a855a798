"""The discrete network DARTS trains from scratch (Liu, Simonyan & Yang, ICLR 2019, section 3.2):
cells built from a :class:`~.genotypes.Genotype` alone, stacked like the supernet's.

Shapes: N images, C_in image channels, S side, ``C`` a cell's channels per node. Each node sums
its two ops; with ``drop_path`` each op that is not an identity is dropped per sample during
training (the paper's drop-path, :func:`drop_path`). The optional auxiliary head
classifies the cell at two thirds of the depth (Szegedy et al.; the paper's weight is 0.4).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from tuneforge._checks import check_bool, check_number
from tuneforge.trainables.darts.genotypes import Cell, Genotype
from tuneforge.trainables.darts.operations import OPS, FactorizedReduce, ReLUConvBN
from tuneforge.trainables.darts.search_model import check_network_shape, reduction_layers

__all__ = ["DartsNetwork", "NetworkCell", "NetworkConfig", "drop_path"]


@dataclass(frozen=True)
class NetworkConfig:
    """The discrete network's shape; the genotype is given beside it. The paper's CIFAR-10
    network has 36 channels and 20 cells; the defaults suit a CPU."""

    channels: int = 16
    layers: int = 8
    stem_multiplier: int = 3
    stem_stride: int = 1
    """2 halves the side in the stem (28x28 images enter the cells at 14x14): about 4x less
    compute, which a CPU needs; 1 is the paper's CIFAR-10 stem."""
    auxiliary: bool = False
    """An auxiliary classifier after the cell at two thirds of the depth (training only)."""
    drop_path: float = 0.0
    """The largest drop-path probability; the trainable raises it linearly over the epochs
    (the paper: 0.2 over 600 epochs; short runs do better without)."""
    image_size: int = 28
    in_channels: int = 1
    n_classes: int = 10

    def __post_init__(self) -> None:
        check_network_shape(self, ("channels", "layers", "stem_multiplier", "image_size", "in_channels",
                                   "n_classes"))
        check_number("drop_path", self.drop_path, at_least=0, below=1)
        check_bool("auxiliary", self.auxiliary)


def drop_path(x: torch.Tensor, p: float) -> torch.Tensor:
    """Zero each sample's ``x`` (N, ...) with probability ``p``, scaling the kept ones by 1 / (1 - p)
    so the expectation is unchanged (torchvision's ``stochastic_depth``, mode "row"; torchvision is
    not a dependency)."""
    keep = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device, dtype=x.dtype)
    return x * keep.bernoulli_(1 - p).div_(1 - p)


class NetworkCell(nn.Module):
    """A cell of a genotype: node i sums ``op_a(state_a) + op_b(state_b)`` for its two pairs; the
    output concatenates the genotype's ``concat`` states."""

    def __init__(self, pairs: Cell, concat: tuple[int, ...], c_prev_prev: int, c_prev: int, c: int, *,
                 reduction: bool, reduction_prev: bool) -> None:
        super().__init__()
        self.reduction, self.concat = reduction, concat
        self.inputs = [source for _, source in pairs]
        self.preprocess0 = (FactorizedReduce(c_prev_prev, c) if reduction_prev
                            else ReLUConvBN(c_prev_prev, c, 1, 1, 0))
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, 1, 0)
        self.ops = nn.ModuleList(OPS[name](c, 2 if reduction and source < 2 else 1, True)
                                 for name, source in pairs)

    @property
    def out_channels_factor(self) -> int:
        return len(self.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]  # each (N, C, S', S')
        for node in range(len(self.ops) // 2):
            total = 0
            for k in (2 * node, 2 * node + 1):
                h = self.ops[k](states[self.inputs[k]])
                if self.training and drop_prob > 0 and not isinstance(self.ops[k], nn.Identity):
                    h = drop_path(h, drop_prob)
                total = total + h
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)  # (N, len(concat) * C, S', S')


class AuxiliaryHead(nn.Sequential):
    """The auxiliary classifier: ReLU, 5x5 average pooling to a 2x2 map (adaptive, so any side
    works), 1x1 and 2x2 convolutions, a linear layer."""

    def __init__(self, c: int, n_classes: int) -> None:
        # Not in place: the cell's output it reads also feeds the next cell and the classifier.
        super().__init__(nn.ReLU(inplace=False), nn.AdaptiveAvgPool2d(2),
                         nn.Conv2d(c, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
                         nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=True),
                         nn.Flatten(), nn.Linear(768, n_classes))


class DartsNetwork(nn.Module):
    """Stem, ``layers`` cells of ``genotype`` (reductions where the supernet has them), global
    average pooling and a linear classifier. ``forward`` returns logits (N, n_classes), and in
    training with ``auxiliary`` also the auxiliary head's, as ``(logits, auxiliary_logits)``."""

    def __init__(self, config: NetworkConfig, genotype: Genotype) -> None:
        super().__init__()
        self.config, self.genotype = config, genotype
        self.drop_prob = 0.0
        """The current drop-path probability (the trainable sets it each epoch)."""
        c = config.channels
        c_stem = config.stem_multiplier * c
        self.stem = nn.Sequential(nn.Conv2d(config.in_channels, c_stem, 3, stride=config.stem_stride,
                                            padding=1, bias=False),
                                  nn.BatchNorm2d(c_stem))
        c_prev_prev, c_prev, reduction_prev = c_stem, c_stem, False
        self.cells = nn.ModuleList()
        self.auxiliary_after = 2 * config.layers // 3 if config.auxiliary else None
        self.auxiliary_head = None
        for layer in range(config.layers):
            reduction = layer in reduction_layers(config.layers)
            c = 2 * c if reduction else c
            pairs, concat = ((genotype.reduce, genotype.reduce_concat) if reduction
                             else (genotype.normal, genotype.normal_concat))
            cell = NetworkCell(pairs, concat, c_prev_prev, c_prev, c, reduction=reduction,
                               reduction_prev=reduction_prev)
            self.cells.append(cell)
            c_prev_prev, c_prev, reduction_prev = c_prev, cell.out_channels_factor * c, reduction
            if layer == self.auxiliary_after:
                self.auxiliary_head = AuxiliaryHead(c_prev, config.n_classes)
        self.classifier = nn.Linear(c_prev, config.n_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        s0 = s1 = self.stem(images)
        auxiliary = None
        for layer, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_prob)
            if layer == self.auxiliary_after and self.training:
                auxiliary = self.auxiliary_head(s1)
        logits = self.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1))
        return (logits, auxiliary) if auxiliary is not None else logits
