"""The GANs as trainables: DCGAN (:mod:`.dcgan`), the conditional GAN (:mod:`.cgan`) and WGAN-GP
(:mod:`.wgan_gp`), scored on a dataset classifier's features (:mod:`.features`, :mod:`.metrics`),
with their glue in :mod:`.trainable`."""

from __future__ import annotations

from tuneforge.trainables.gans.trainable import CGAN, DCGAN, WGAN_GP, train_cgan, train_dcgan, train_wgan_gp
from tuneforge.trainables.torch.adapter import torch_trainable

__all__ = ["CGAN_TRAINABLE", "DCGAN_TRAINABLE", "WGAN_GP_TRAINABLE", "train_cgan", "train_dcgan",
           "train_wgan_gp"]

DCGAN_TRAINABLE = torch_trainable(DCGAN, train_dcgan)
CGAN_TRAINABLE = torch_trainable(CGAN, train_cgan)
WGAN_GP_TRAINABLE = torch_trainable(WGAN_GP, train_wgan_gp)
