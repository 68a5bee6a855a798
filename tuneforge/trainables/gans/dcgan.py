"""DCGAN (Radford, Metz & Chintala 2016, arXiv:1511.06434): a generator of transposed convolutions
and a discriminator of strided convolutions, both sized from the image.

This file holds only the modules and the losses: no training loop, data, Ray or MLflow. The
conditional GAN (:mod:`.cgan`) and WGAN-GP (:mod:`.wgan_gp`) build on the same two stacks.

Symbols and shapes:

    N   batch size
    Z   latent size                        (config.latent_dim)
    C   image channels                     (config.channels)
    S   image side                         (config.image_size; images are square)
    s0  side of the first feature map      (S halved while even and at least 8: 7 for 28, 4 for 32 and 64)
    n   up-sampling stages                 (S = s0 * 2**n: 2 for 28, 3 for 32, 4 for 64)
    G   generator width                    (config.g_width: channels of its last hidden map,
                                            doubled at every coarser stage)
    D   discriminator width                (config.d_width: channels of its first map, likewise)

    generator:     z (N, Z) -> (N, G*2**(n-1), s0, s0) -> ... -> (N, G, S/2, S/2)
                   -> images (N, C, S, S) in [-1, 1]
    discriminator: images (N, C, S, S) -> (N, D, S/2, S/2) -> ... -> (N, D*2**(n-1), s0, s0) -> logits (N,)

The discriminator returns logits and the losses use ``binary_cross_entropy_with_logits``: the
seed document's Sigmoid + BCELoss saturates to log(0) once the discriminator is confident.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import nn
from torch.nn import functional as F

from tuneforge._checks import check_bool, check_positive_ints
from tuneforge.errors import ConfigError

__all__ = ["DCGANConfig", "Discriminator", "DownStack", "Generator", "UpStack", "dcgan_init",
           "discriminator_loss", "generator_loss", "stages"]

_MIN_SIDE = 4
"""The smallest first feature map: the image side is halved while even and the half is at least this."""


@dataclass(frozen=True)
class DCGANConfig:
    """What fixes a DCGAN's two networks; validated on creation (ConfigError naming the field).

    The defaults fit 28x28 grey images (MNIST, Fashion-MNIST); image size and channels come from
    the dataset."""

    image_size: int = 28
    channels: int = 1
    latent_dim: int = 64
    g_width: int = 64
    d_width: int = 64
    spectral_norm: bool = False
    """The discriminator's layers spectrally normalised (:func:`spectrally_normalised`), and
    without BatchNorm, as in SNGAN."""

    def __post_init__(self) -> None:
        check_positive_ints(self, ("image_size", "channels", "latent_dim", "g_width", "d_width"))
        check_bool("spectral_norm", self.spectral_norm)
        stages(self.image_size)


def stages(image_size: int) -> tuple[int, int]:
    """``(s0, n)``: the first feature map's side and the number of 2x up-samplings to ``image_size``.

    The side is halved while it is even and its half is at least 4: 28 -> (7, 2), 32 -> (4, 3),
    64 -> (4, 4), 16 -> (4, 2). A side that cannot be halved once (odd, or under 8) is refused."""
    side, n = image_size, 0
    while side % 2 == 0 and side // 2 >= _MIN_SIDE:
        side, n = side // 2, n + 1
    if n == 0:
        raise ConfigError(f"image_size: {image_size} is not allowed; a GAN needs an even side of at least "
                          f"{2 * _MIN_SIDE} (e.g. 16, 28, 32, 64)")
    return side, n


def dcgan_init(module: nn.Module) -> None:
    """DCGAN's initialisation, for ``Module.apply``: convolutions N(0, 0.02), norm scales N(1, 0.02)
    with zero shifts."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _no_norm(channels: int) -> nn.Module:
    """A discriminator stage's norm where spectral normalisation stands in for BatchNorm."""
    return nn.Identity()


class UpStack(nn.Module):
    """The generator's body: an input vector (N, I) to images (N, C, S, S) in [-1, 1].

    A transposed convolution projects the vector to (s0, s0) maps, then each stage doubles the side
    and halves the channels (BatchNorm, ReLU); the last stage makes C channels, through tanh."""

    def __init__(self, in_features: int, width: int, channels: int, image_size: int) -> None:
        super().__init__()
        side, n = stages(image_size)
        widths = [width * 2 ** (n - 1 - i) for i in range(n)]  # G*2**(n-1), ..., G
        layers: list[nn.Module] = [nn.ConvTranspose2d(in_features, widths[0], side, 1, 0, bias=False),
                                   nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
        for wide, narrow in pairwise(widths):
            layers += [nn.ConvTranspose2d(wide, narrow, 4, 2, 1, bias=False), nn.BatchNorm2d(narrow),
                       nn.ReLU(inplace=True)]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1), nn.Tanh()]
        self.layers = nn.Sequential(*layers)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:  # (N, I) -> (N, C, S, S)
        return self.layers(inputs[:, :, None, None])


class DownStack(nn.Module):
    """The discriminator's body: images (N, C, S, S) to features (N, D*2**(n-1), s0, s0).

    Each stage halves the side and (after the first) doubles the channels, with LeakyReLU(0.2) and
    ``norm(channels)`` after every convolution but the first (DCGAN: BatchNorm; a WGAN-GP critic
    needs a per-sample one)."""

    def __init__(self, channels: int, width: int, image_size: int,
                 norm: Callable[[int], nn.Module]) -> None:
        super().__init__()
        _, n = stages(image_size)
        widths = [width * 2 ** i for i in range(n)]  # D, ..., D*2**(n-1)
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        for narrow, wide in pairwise(widths):
            layers += [nn.Conv2d(narrow, wide, 4, 2, 1, bias=False), norm(wide),
                       nn.LeakyReLU(0.2, inplace=True)]
        self.layers = nn.Sequential(*layers)
        self.out_channels = widths[-1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (N, C, S, S) -> (N, D', s0, s0)
        return self.layers(images)


class Generator(nn.Module):
    """DCGAN's generator: latents (N, Z) to images (N, C, S, S) in [-1, 1]."""

    def __init__(self, config: DCGANConfig) -> None:
        super().__init__()
        self.config = config
        self.body = UpStack(config.latent_dim, config.g_width, config.channels, config.image_size)
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)


class Discriminator(nn.Module):
    """DCGAN's discriminator: images (N, C, S, S) in [-1, 1] to real-vs-fake logits (N,)."""

    def __init__(self, config: DCGANConfig, norm: Callable[[int], nn.Module] = nn.BatchNorm2d) -> None:
        super().__init__()
        side, _ = stages(config.image_size)
        spectral = getattr(config, "spectral_norm", False)
        self.body = DownStack(config.channels, config.d_width, config.image_size,
                              _no_norm if spectral else norm)
        self.head = nn.Conv2d(self.body.out_channels, 1, side)  # (N, D', s0, s0) -> (N, 1, 1, 1)
        self.apply(dcgan_init)
        if spectral:
            spectrally_normalised(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(images)).flatten()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss: binary cross-entropy of real images as 1 and generated ones as 0
    (the sum of the two means, as in Goodfellow et al.'s value function)."""
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's non-saturating loss: -log D(G(z)), i.e. generated images labelled 1."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The hinge loss (Lim & Ye 2017; SNGAN, BigGAN): mean(relu(1 - D(x))) + mean(relu(1 + D(G(z)))),
    which stops pushing a logit once it is past the margin."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def hinge_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's side of the hinge loss: -mean(D(G(z)))."""
    return -fake_logits.mean()


LOSSES = {"bce": (discriminator_loss, generator_loss),
          "hinge": (hinge_discriminator_loss, hinge_generator_loss)}
"""A DCGAN's or cGAN's ``loss`` setting: its discriminator's and generator's loss functions."""


def spectrally_normalised(module: nn.Module) -> nn.Module:
    """``module`` with every convolution, linear map and embedding spectrally normalised (Miyato
    et al. 2018: each weight divided by its largest singular value, one power iteration a step),
    in place."""
    for child in list(module.modules()):
        if isinstance(child, (nn.Conv2d, nn.Linear, nn.Embedding)):
            nn.utils.parametrizations.spectral_norm(child)
    return module
