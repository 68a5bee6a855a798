"""The special tokens every vocabulary starts with: the model, the data and the decoding read
them from here (the model never imports the data module)."""

from __future__ import annotations

__all__ = ["BOS", "EOS", "PAD", "SPECIALS", "UNK"]

PAD, BOS, EOS, UNK = 0, 1, 2, 3
"""The special ids every vocabulary starts with; PAD is 0 so that zero-filled batches are padding."""
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
"""The special symbols, at the ids PAD, BOS, EOS and UNK."""
