"""One torch thread for unit tests of tiny tensors (imported by the GAN, DARTS, transformer and ViT
conftests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """The tensors of the unit tests are tiny: intra-op threads add only synchronisation, which on a
    busy 2-core machine made them several times slower. Restored afterwards (trials set their own)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
