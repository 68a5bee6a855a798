"""A small Vision Transformer (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words", arXiv:2010.11929).

The image is cut into P x P patches, each patch becomes one token, a learned class token is prepended,
and a stack of pre-norm transformer blocks mixes the tokens; the class token's final state is classified.
This file holds only the modules: no training, data, Ray or MLflow.

Symbols and shapes:

    N   batch size
    C   image channels                     (config.channels)
    H W image height and width             (config.image_size; images are square)
    P   patch side                         (config.patch_size; must divide H)
    T   tokens = (H/P)*(W/P) + 1           (the patches plus the class token)
    D   width, the token dimension         (config.width)
    h   attention heads                    (config.heads); each head has D/h dimensions
    K   classes                            (config.n_classes)

    images (N, C, H, W) -> patches (N, T-1, D) -> tokens (N, T, D) -> class token (N, D) -> logits (N, K)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from tuneforge._checks import check_number, check_positive_ints
from tuneforge.errors import ConfigError

__all__ = ["MLP", "Attention", "Block", "PatchEmbedding", "ViTConfig", "VisionTransformer"]

_INIT_STD = 0.02
"""Std of the truncated-normal init of weights, class token and positions (ViT and BERT use 0.02)."""

_INIT_CUTOFF = 2 * _INIT_STD
"""Truncate at two std. torch's ``trunc_normal_`` defaults to the absolute bounds [-2, 2], which at
std 0.02 is 100 std away, i.e. no truncation at all."""

_POSITIVE_INT_FIELDS = ("image_size", "channels", "n_classes", "patch_size", "width", "depth", "heads")


@dataclass(frozen=True)
class ViTConfig:
    """Everything that fixes a Vision Transformer's architecture; validated on creation.

    The defaults fit 28x28 grey images (MNIST, Fashion-MNIST): patch 4 gives 7x7 = 49 patch tokens.
    A bad value raises :class:`~tuneforge.errors.ConfigError` naming the field, the value and the rule.
    """

    image_size: int = 28
    channels: int = 1
    n_classes: int = 10
    patch_size: int = 7  # 28/7 = 4 patches a side: 17 tokens; 3x the samples/s of patch 4 on MNIST, and
    # more accurate after a few epochs (0.906 against 0.868 validation accuracy after one, BENCHMARKS.md)
    width: int = 64
    depth: int = 4
    heads: int = 4  # 16 dimensions a head
    mlp_ratio: float = 2.0  # the paper uses 4; 2 halves the MLP cost and suffices at this width
    dropout: float = 0.0  # budgets of a few epochs underfit: dropout slows them more than it regularises

    def __post_init__(self) -> None:
        check_positive_ints(self, _POSITIVE_INT_FIELDS)
        _check_patch_size(self.patch_size, self.image_size)
        _check_heads(self.width, self.heads)
        check_number("mlp_ratio", self.mlp_ratio, above=0)
        check_number("dropout", self.dropout, at_least=0, below=1)

    @property
    def n_patches(self) -> int:
        """Patch tokens per image: (H/P) * (W/P)."""
        return (self.image_size // self.patch_size) ** 2

    @property
    def n_tokens(self) -> int:
        """T: the patch tokens plus the class token."""
        return self.n_patches + 1

    @property
    def mlp_width(self) -> int:
        """Hidden width of each block's MLP: round(D * mlp_ratio), at least 1."""
        return max(1, round(self.width * self.mlp_ratio))


def _check_patch_size(patch_size: int, image_size: int) -> None:
    if image_size % patch_size != 0:
        divisors = ", ".join(str(d) for d in range(1, image_size + 1) if image_size % d == 0)
        raise ConfigError(
            f"patch_size: {patch_size} does not divide image_size {image_size}; choose one of {divisors}"
        )


def _check_heads(width: int, heads: int) -> None:
    if width % heads != 0:
        raise ConfigError(f"width: {width} is not divisible by heads {heads}; choose a multiple of {heads}")


class PatchEmbedding(nn.Module):
    """Cut the image into P x P patches and project each to D (the paper's eq. 1, E x_p).

    A Conv2d with kernel = stride = P is exactly one shared Linear applied to every flattened patch.
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.projection = nn.Conv2d(
            config.channels, config.width, kernel_size=config.patch_size, stride=config.patch_size
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, C, H, W) -> patch tokens (N, T-1, D), in row-major patch order."""
        grid = self.projection(images)  # (N, D, H/P, W/P)
        return grid.flatten(2).transpose(1, 2)  # (N, T-1, D)


class Attention(nn.Module):
    """Multi-head self-attention over all T tokens (no mask: every token sees every other)."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.dropout = config.dropout
        self.qkv = nn.Linear(config.width, 3 * config.width)
        self.projection = nn.Linear(config.width, config.width)
        self.projection_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, T, D) -> (N, T, D): softmax(q k^T / sqrt(D/h)) v per head, heads concatenated, projected."""
        n_batch, n_tokens, width = x.shape
        qkv = self.qkv(x).view(n_batch, n_tokens, 3, self.heads, width // self.heads)  # (N, T, 3, h, D/h)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (N, h, T, D/h)
        attended = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0
        )  # (N, h, T, D/h)
        merged = attended.transpose(1, 2).reshape(n_batch, n_tokens, width)  # (N, T, D)
        return self.projection_dropout(self.projection(merged))


class MLP(nn.Module):
    """The block's position-wise feed-forward net: Linear D -> mlp_width, GELU, Linear back to D."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.expand = nn.Linear(config.width, config.mlp_width)
        self.activation = nn.GELU()
        self.hidden_dropout = nn.Dropout(config.dropout)
        self.contract = nn.Linear(config.mlp_width, config.width)
        self.output_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, T, D) -> (N, T, D)."""
        hidden = self.hidden_dropout(self.activation(self.expand(x)))  # (N, T, mlp_width)
        return self.output_dropout(self.contract(hidden))


class Block(nn.Module):
    """One pre-norm encoder block (the paper's eqs. 2-3): x + MSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.width)
        self.attention = Attention(config)
        self.ln2 = nn.LayerNorm(config.width)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, T, D) -> (N, T, D)."""
        x = x + self.attention(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class VisionTransformer(nn.Module):
    """Images (N, C, H, W) -> class logits (N, K); initialises its own weights."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embedding = PatchEmbedding(config)
        self.class_token = nn.Parameter(torch.zeros(1, 1, config.width))  # (1, 1, D)
        self.position_embedding = nn.Parameter(torch.zeros(1, config.n_tokens, config.width))  # (1, T, D)
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.final_norm = nn.LayerNorm(config.width)
        self.head = nn.Linear(config.width, config.n_classes)
        self.apply(_init_weights)
        _trunc_normal(self.class_token)
        _trunc_normal(self.position_embedding)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, C, H, W) float -> logits (N, K); ValueError if (C, H, W) differs from the config."""
        self._check_image_shape(images)
        tokens = self._embed(images)  # (N, T, D)
        for block in self.blocks:
            tokens = block(tokens)  # (N, T, D)
        class_state = self.final_norm(tokens[:, 0])  # (N, D)
        return self.head(class_state)  # (N, K)

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, C, H, W) -> tokens (N, T, D): [class; patches] + positions, then dropout."""
        patches = self.patch_embedding(images)  # (N, T-1, D)
        class_tokens = self.class_token.expand(patches.shape[0], -1, -1)  # (N, 1, D)
        tokens = torch.cat([class_tokens, patches], dim=1) + self.position_embedding  # (N, T, D)
        return self.embedding_dropout(tokens)

    def _check_image_shape(self, images: torch.Tensor) -> None:
        expected = (self.config.channels, self.config.image_size, self.config.image_size)
        if images.dim() != 4 or tuple(images.shape[-3:]) != expected:
            raise ValueError(
                f"images: expected shape (N, {', '.join(map(str, expected))}), got {tuple(images.shape)}; "
                f"resize the input or build the model with a matching ViTConfig"
            )


def _init_weights(module: nn.Module) -> None:
    """Linear: truncated normal (std 0.02, cut at 2 std), zero bias; LayerNorm: weight 1, bias 0.

    The patch Conv2d keeps torch's default (Kaiming-uniform): it sees raw pixels, not unit-scale tokens.
    """
    if isinstance(module, nn.Linear):
        _trunc_normal(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _trunc_normal(tensor: torch.Tensor) -> None:
    """Fill in place from N(0, 0.02^2) truncated to [-0.04, 0.04]."""
    nn.init.trunc_normal_(tensor, std=_INIT_STD, a=-_INIT_CUTOFF, b=_INIT_CUTOFF)
