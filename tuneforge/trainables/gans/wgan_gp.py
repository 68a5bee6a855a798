"""WGAN-GP (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", arXiv:1704.00028):
DCGAN's generator against a critic trained to estimate the Wasserstein-1 distance, kept
1-Lipschitz by a penalty on its gradient at random interpolates of real and generated images.

- The critic is DCGAN's discriminator without a sigmoid and without BatchNorm (the penalty is per
  sample, and batch statistics couple the samples): it normalises with ``GroupNorm(1, channels)``,
  a layer norm over each sample's channels and pixels that fits any image size (the seed
  document's ``LayerNorm([C, H, W])`` shapes only fit 64x64).
- Losses: critic ``E[f(fake)] - E[f(real)] + lambda * E[(||grad f(x_hat)||_2 - 1)^2]``, generator
  ``-E[f(fake)]``; the paper's defaults are lambda = 10, 5 critic steps per generator step and
  Adam(lr 1e-4, betas (0, 0.9)), which the trainable uses.

This file holds only the modules and the losses: no training loop, data, Ray or MLflow.

    critic: images (N, C, S, S) in [-1, 1] -> scores (N,) (unbounded; higher means "more real")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from tuneforge.trainables.gans.dcgan import DCGANConfig, Discriminator

__all__ = ["Critic", "WGANGPConfig", "critic_loss", "generator_loss", "gradient_penalty"]


@dataclass(frozen=True)
class WGANGPConfig(DCGANConfig):
    """A WGAN-GP's networks: DCGAN's fields (its generator is DCGAN's)."""


def _layer_norm(channels: int) -> nn.Module:
    return nn.GroupNorm(1, channels)


class Critic(Discriminator):
    """DCGAN's discriminator with a per-sample normalisation and no sigmoid: scores (N,)."""

    def __init__(self, config: DCGANConfig, norm: Callable[[int], nn.Module] = _layer_norm) -> None:
        super().__init__(config, norm)


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                     fake: torch.Tensor, *, scale: float | torch.Tensor = 1.0,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """``E[(||grad_x f(x_hat)||_2 - 1)^2]`` over ``x_hat = e * real + (1 - e) * fake``, e ~ U(0, 1)
    per sample (the paper's eq. 3), with the graph kept so that the penalty can be trained on.

    ``scale`` is a mixed-precision loss scale: the critic's output is multiplied by it before the
    gradient is taken and the gradient divided by it after (the GradScaler recipe for penalties);
    1 without AMP. A 0-dim tensor on the device spares the host sync of reading the scale."""
    e = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype, generator=generator)
    mixed = (e * real + (1 - e) * fake).requires_grad_(True)
    scores = critic(mixed)
    [grads] = torch.autograd.grad(scores.sum() * scale, mixed, create_graph=True)
    grads = grads / scale
    return ((grads.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor, penalty: torch.Tensor,
                gp_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The critic's loss and the Wasserstein estimate ``E[f(real)] - E[f(fake)]`` (detached)."""
    wasserstein = real_scores.mean() - fake_scores.mean()
    return -wasserstein + gp_weight * penalty, wasserstein.detach()


def generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """The generator's loss, ``-E[f(G(z))]``."""
    return -fake_scores.mean()

