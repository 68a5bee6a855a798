"""DARTS' candidate operations as data (Liu, Simonyan & Yang, ICLR 2019, section 3.1).

:data:`OPS` maps an operation's name to its factory, all with one signature ``(C, stride, affine)``:
``C`` channels in and out, ``stride`` 1 (keeps the side) or 2 (halves it, rounding up), ``affine``
whether BatchNorm learns a scale and shift (off in the supernet, where the architecture weights
scale each op, as in the paper; on in the discrete network). Every op maps (N, C, H, W) to
(N, C, H', W') with H' = ceil(H / stride), for any H, odd sides included.

:data:`PRIMITIVES` is the searched set, in the paper's order; ``none`` (the zero op) is first, and
a derived cell never uses it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["OPS", "PRIMITIVES", "FactorizedReduce", "ReLUConvBN", "Zero"]


class Zero(nn.Module):
    """The ``none`` op: zeros at the output's size (an edge the architecture can switch off)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, C, H', W')
        return x[:, :, ::self.stride, ::self.stride].mul(0.0)


class ReLUConvBN(nn.Sequential):
    """ReLU, convolution, BatchNorm: the ordering every DARTS convolution uses."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 affine: bool = True) -> None:
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False),
                         nn.BatchNorm2d(c_out, affine=affine))


class DilConv(nn.Sequential):
    """A dilated depthwise-separable convolution: ReLU, depthwise dilated conv, 1x1 conv, BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int,
                 affine: bool = True) -> None:
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(c_in, c_in, kernel, stride, padding, dilation=dilation, groups=c_in,
                                   bias=False),
                         nn.Conv2d(c_in, c_out, 1, bias=False),
                         nn.BatchNorm2d(c_out, affine=affine))


class SepConv(nn.Sequential):
    """The paper's separable convolution: a depthwise-separable convolution applied twice, the
    first with the stride."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 affine: bool = True) -> None:
        super().__init__(DilConv(c_in, c_in, kernel, stride, padding, 1, affine),
                         DilConv(c_in, c_out, kernel, 1, padding, 1, affine))


class FactorizedReduce(nn.Module):
    """Halves the side with two stride-2 1x1 convolutions, one offset by a pixel, concatenated:
    no pixel is skipped. The offset path pads one row and column at the far edge, so an odd side
    halves like a stride-2 convolution does (7 -> 4)."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce: c_out must be even, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C_in, H, W) -> (N, C_out, ceil(H/2), ...)
        x = self.relu(x)
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


def _pool(kind: type[nn.Module]) -> Callable[[int, int, bool], nn.Module]:
    """A 3x3 pooling followed by BatchNorm: pooling has no weights, so BN puts its output on the
    scale of the convolutions' (the paper's search adds it; here it is part of the op)."""

    def build(c: int, stride: int, affine: bool) -> nn.Module:
        pool = (nn.AvgPool2d(3, stride, 1, count_include_pad=False) if kind is nn.AvgPool2d
                else nn.MaxPool2d(3, stride, 1))
        return nn.Sequential(pool, nn.BatchNorm2d(c, affine=affine))

    return build


def _skip(c: int, stride: int, affine: bool) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine)


OPS: dict[str, Callable[[int, int, bool], nn.Module]] = {
    "none": lambda c, stride, affine: Zero(stride),
    "max_pool_3x3": _pool(nn.MaxPool2d),
    "avg_pool_3x3": _pool(nn.AvgPool2d),
    "skip_connect": _skip,
    "sep_conv_3x3": lambda c, stride, affine: SepConv(c, c, 3, stride, 1, affine),
    "sep_conv_5x5": lambda c, stride, affine: SepConv(c, c, 5, stride, 2, affine),
    "dil_conv_3x3": lambda c, stride, affine: DilConv(c, c, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda c, stride, affine: DilConv(c, c, 5, stride, 4, 2, affine),
}
"""Operation name -> factory ``(C, stride, affine) -> nn.Module``."""

PRIMITIVES: tuple[str, ...] = tuple(OPS)
"""The searched operations, ``none`` first."""

