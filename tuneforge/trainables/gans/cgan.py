"""A conditional GAN (Mirza & Osindero 2014, arXiv:1411.1784) on DCGAN's stacks (:mod:`.dcgan`):
the generator makes an image of a requested class, the discriminator judges image and class.

- Generator: the latent (N, Z) concatenated with a learned embedding of the label (N, E) goes
  through DCGAN's up-sampling stack.
- Discriminator: the projection discriminator of Miyato & Koyama (2018, arXiv:1802.05637): the
  logit is an unconditional head on the features plus the inner product of the class embedding
  with the features summed over space, ``head(h) + <embed(y), sum_xy h>``.

This file holds only the modules: no training loop, data, Ray or MLflow. The losses are DCGAN's.

    generator:     z (N, Z), labels (N,) -> images (N, C, S, S) in [-1, 1]
    discriminator: images (N, C, S, S), labels (N,) -> logits (N,)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tuneforge._checks import check_bool, check_positive_ints
from tuneforge.trainables.gans.dcgan import DownStack, UpStack, dcgan_init, spectrally_normalised, stages

__all__ = ["CGANConfig", "ConditionalDiscriminator", "ConditionalGenerator"]


@dataclass(frozen=True)
class CGANConfig:
    """What fixes a conditional GAN's two networks; validated on creation. Image size, channels
    and the number of classes come from the dataset."""

    image_size: int = 28
    channels: int = 1
    n_classes: int = 10
    latent_dim: int = 64
    label_dim: int = 16
    """E: the generator's label embedding, concatenated with the latent."""
    g_width: int = 64
    d_width: int = 64
    spectral_norm: bool = False
    """The discriminator's layers (its label embedding too) spectrally normalised, without
    BatchNorm, as in SNGAN's projection discriminator."""

    def __post_init__(self) -> None:
        check_bool("spectral_norm", self.spectral_norm)
        check_positive_ints(self, ("image_size", "channels", "n_classes", "latent_dim", "label_dim",
                                   "g_width", "d_width"))
        stages(self.image_size)


class ConditionalGenerator(nn.Module):
    """Latents (N, Z) and labels (N,) (a LongTensor in ``0..n_classes-1``) to images in [-1, 1]."""

    def __init__(self, config: CGANConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.n_classes, config.label_dim)
        self.body = UpStack(config.latent_dim + config.label_dim, config.g_width, config.channels,
                            config.image_size)
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([z, self.embed(labels)], dim=1))


class ConditionalDiscriminator(nn.Module):
    """Images (N, C, S, S) and labels (N,) to logits (N,): high for a real image of that class."""

    def __init__(self, config: CGANConfig) -> None:
        super().__init__()
        side, _ = stages(config.image_size)
        norm = (lambda channels: nn.Identity()) if config.spectral_norm else nn.BatchNorm2d
        self.body = DownStack(config.channels, config.d_width, config.image_size, norm)
        self.head = nn.Conv2d(self.body.out_channels, 1, side)
        self.embed = nn.Embedding(config.n_classes, self.body.out_channels)
        self.apply(dcgan_init)
        if config.spectral_norm:
            spectrally_normalised(self)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        features = self.body(images)  # (N, D', s0, s0)
        projection = (self.embed(labels) * features.sum(dim=(2, 3))).sum(dim=1)
        return self.head(features).flatten() + projection
