"""DARTS (Liu, Simonyan & Yang, ICLR 2019) as trainables: the operations (:mod:`.operations`), the
genotype as data (:mod:`.genotypes`), the supernet (:mod:`.search_model`), the architecture step
(:mod:`.architect`), the discrete network (:mod:`.model`), pictures, and their glue in
:mod:`.trainable`: ``darts`` searches a supernet, ``darts-net`` trains a genotype from scratch."""

from __future__ import annotations

from tuneforge.trainables.darts.trainable import DARTS, DARTS_NET, train_darts, train_darts_net
from tuneforge.trainables.torch.adapter import torch_trainable

__all__ = ["DARTS_NET_TRAINABLE", "DARTS_TRAINABLE", "train_darts", "train_darts_net"]

DARTS_TRAINABLE = torch_trainable(DARTS, train_darts)
DARTS_NET_TRAINABLE = torch_trainable(DARTS_NET, train_darts_net)
