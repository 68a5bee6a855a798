"""An encoder-decoder Transformer for sequence-to-sequence tasks (Vaswani et al. 2017, "Attention Is
All You Need", arXiv:1706.03762), with greedy and beam-search decoding.

The source tokens are embedded (scaled by sqrt(D)), given sinusoidal positions and mixed by the
encoder; the decoder reads the target so far (shifted right: it starts with BOS) through causal
self-attention and attends to the encoder's states; a linear head gives the next token's logits.
This file holds only the modules and the decoding: no training, data, Ray or MLflow.

Masks are boolean and mean "may attend" (True) as ``scaled_dot_product_attention`` takes them,
and come from two functions: :func:`padding_mask` (every attention masks the padded keys) and
:func:`causal_mask` (the decoder's self-attention also masks the future, so position t sees
positions 0..t only). A forward pass builds each once: the source's padding mask serves the
encoder and the decoder's cross-attention. (The seed document built a 0/-inf mask and then masked
where it was 0, so each position saw only the future; a test guards against that here.)

Symbols and shapes:

    N   batch size
    S   source length (padded)             T   target length (padded), BOS included
    D   width                              (config.width)
    h   heads                              (config.heads); each head has D/h dimensions
    V   target vocabulary                  (config.target_vocab_size; ids 0..3 are PAD BOS EOS UNK)

    source (N, S) -> memory (N, S, D);  memory, target (N, T) -> logits (N, T, V)

Decoding (:func:`greedy_decode`, :func:`beam_search`) runs the decoder one token at a time through
:class:`DecoderState`, which keeps each layer's keys and values (a key/value cache): a step attends
its one new query to the cached keys, so decoding an output of L tokens costs O(L) decoder
positions instead of re-running the decoder over the whole prefix at each step, O(L^2). The
encoder's keys and values for the cross-attention are computed once per source. ``cache=False``
re-runs the prefix (the decoding before the cache), kept as the reference the tests and
``benchmarks/transformer.py decoding`` compare against: both give the same tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from tuneforge._checks import check_bool, check_number, check_positive_ints
from tuneforge.errors import ConfigError
from tuneforge.trainables.transformer.tokens import BOS, EOS, PAD

__all__ = ["BOS", "EOS", "PAD", "DecoderState", "Seq2SeqConfig", "Seq2SeqTransformer", "beam_search",
           "causal_mask", "greedy_decode", "padding_mask"]

_LENGTH_PENALTY = 0.6
"""Beam search ranks finished hypotheses by log-probability / ((5 + length) / 6) ** 0.6, the length
penalty of Wu et al. 2016 (GNMT), so that short outputs are not favoured merely for being short."""

_POSITIVE_INT_FIELDS = ("source_vocab_size", "target_vocab_size", "width", "heads", "encoder_layers",
                        "decoder_layers", "max_len")


@dataclass(frozen=True)
class Seq2SeqConfig:
    """Everything that fixes the Transformer's architecture; validated on creation.

    The defaults are a small model that trains on CMUdict on 2 CPUs in minutes an epoch.
    A bad value raises :class:`~tuneforge.errors.ConfigError` naming the field, the value and the rule.
    """

    source_vocab_size: int = 64
    target_vocab_size: int = 64
    width: int = 128
    heads: int = 4  # 32 dimensions a head
    encoder_layers: int = 3
    decoder_layers: int = 3
    ffn_ratio: float = 4.0
    dropout: float = 0.1
    label_smoothing: float = 0.1
    """Of the training loss (Szegedy et al. 2016); the paper uses 0.1."""
    max_len: int = 64
    """Longest source or target in tokens (BOS and EOS not counted); decoding stops there."""
    norm_first: bool = True
    """Pre-norm blocks (x + f(LN(x))), which train without the paper's long warm-up; False gives the
    paper's post-norm (LN(x + f(x)))."""
    tie_embeddings: bool = False
    """The output head shares the target embedding's weights (Press & Wolf 2017)."""

    def __post_init__(self) -> None:
        check_positive_ints(self, _POSITIVE_INT_FIELDS)
        if self.width % self.heads != 0:
            raise ConfigError(f"width: {self.width} is not divisible by heads {self.heads}; "
                              f"choose a multiple of {self.heads}")
        check_number("ffn_ratio", self.ffn_ratio, above=0)
        for name in ("dropout", "label_smoothing"):
            check_number(name, getattr(self, name), at_least=0, below=1)
        for name in ("norm_first", "tie_embeddings"):
            check_bool(name, getattr(self, name))

    @property
    def ffn_width(self) -> int:
        """Hidden width of each block's feed-forward net: round(D * ffn_ratio), at least 1."""
        return max(1, round(self.width * self.ffn_ratio))


def sinusoidal_positions(length: int, width: int) -> torch.Tensor:
    """The paper's fixed position encodings (section 3.5), (length, width):
    PE[p, 2i] = sin(p / 10000^(2i/D)), PE[p, 2i+1] = cos(p / 10000^(2i/D))."""
    positions = torch.arange(length, dtype=torch.float32)[:, None]  # (L, 1)
    frequencies = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10_000.0) / width))
    table = torch.zeros(length, width)
    table[:, 0::2] = torch.sin(positions * frequencies)
    table[:, 1::2] = torch.cos(positions * frequencies[: width // 2])
    return table


def padding_mask(ids: torch.Tensor) -> torch.Tensor:
    """ids (N, L) -> (N, 1, 1, L): True at the real tokens, the keys every query may attend to."""
    return (ids != PAD)[:, None, None, :]


def causal_mask(length: int, device: torch.device | None = None) -> torch.Tensor:
    """(1, 1, T, T) for T = ``length``: True where key s <= query t, so that position t sees
    positions 0..t only (the paper's masking of subsequent positions, section 3.2.3)."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()[None, None]


class Attention(nn.Module):
    """Multi-head attention of queries over keys and values (self- or cross-), with a boolean mask."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.dropout = config.dropout
        self.query = nn.Linear(config.width, config.width)
        self.key_value = nn.Linear(config.width, 2 * config.width)
        self.projection = nn.Linear(config.width, config.width)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (N, Tq, D) attends to context (N, Tk, D) where mask (N, 1, Tq, Tk) is True -> (N, Tq, D)."""
        return self.attend(x, *self.keys_values(context), mask)

    def keys_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """context (N, Tk, D) -> its keys and values, (N, h, Tk, D/h) each."""
        n_batch, _, width = context.shape
        k, v = self.key_value(context).view(n_batch, -1, 2, self.heads, width // self.heads).permute(
            2, 0, 3, 1, 4)
        return k, v

    def attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (N, Tq, D) attends to keys and values (N, h, Tk, D/h) where mask (N, 1, Tq, Tk) is True
        -> (N, Tq, D)."""
        n_batch, n_queries, width = x.shape
        q = self.query(x).view(n_batch, n_queries, self.heads, width // self.heads).transpose(1, 2)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                  dropout_p=self.dropout if self.training else 0.0)
        return self.projection(attended.transpose(1, 2).reshape(n_batch, n_queries, width))


class FeedForward(nn.Module):
    """Position-wise: Linear D -> ffn_width, ReLU, dropout, Linear back to D."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(config.width, config.ffn_width), nn.ReLU(),
                                 nn.Dropout(config.dropout), nn.Linear(config.ffn_width, config.width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Residual(nn.Module):
    """One sub-layer with its residual and norm: pre-norm x + drop(f(LN(x))), or post-norm
    LN(x + drop(f(x)))."""

    def __init__(self, config: Seq2SeqConfig, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer
        self.norm = nn.LayerNorm(config.width)
        self.dropout = nn.Dropout(config.dropout)
        self.norm_first = config.norm_first

    def forward(self, x: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
        return self.around(lambda h: self.layer(h, *args), x)

    def around(self, sublayer: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``sublayer`` (the layer, or a cached step of it) with this residual and norm."""
        if self.norm_first:
            return x + self.dropout(sublayer(self.norm(x)))
        return self.norm(x + self.dropout(sublayer(x)))


class SelfAttention(Attention):
    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x, x, mask)


class EncoderBlock(nn.Module):
    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.attention = Residual(config, SelfAttention(config))
        self.feed_forward = Residual(config, FeedForward(config))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (N, S, D), mask (N, 1, S, S) -> (N, S, D)."""
        return self.feed_forward(self.attention(x, mask))


class DecoderBlock(nn.Module):
    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.self_attention = Residual(config, SelfAttention(config))
        self.cross_attention = Residual(config, Attention(config))
        self.feed_forward = Residual(config, FeedForward(config))

    def forward(self, y: torch.Tensor, memory: torch.Tensor, self_mask: torch.Tensor,
                cross_mask: torch.Tensor) -> torch.Tensor:
        """y (N, T, D), memory (N, S, D), self_mask (N, 1, T, T), cross_mask (N, 1, T, S) -> (N, T, D)."""
        y = self.self_attention(y, self_mask)
        return self.feed_forward(self.cross_attention(y, memory, cross_mask))

    def step(self, y: torch.Tensor, cache: LayerCache, self_mask: torch.Tensor,
             cross_mask: torch.Tensor) -> torch.Tensor:
        """One new position: y (N, 1, D) attends to the cached positions and itself (self_mask
        (N, 1, 1, t+1)) and to the memory's cached keys (cross_mask (N, 1, 1, S)) -> (N, 1, D);
        appends the position's keys and values to ``cache``."""
        self_attention, cross_attention = self.self_attention.layer, self.cross_attention.layer

        def attend_to_prefix(h: torch.Tensor) -> torch.Tensor:
            cache.append(*self_attention.keys_values(h))
            return self_attention.attend(h, cache.keys, cache.values, self_mask)

        y = self.self_attention.around(attend_to_prefix, y)
        y = self.cross_attention.around(
            lambda h: cross_attention.attend(h, cache.memory_keys, cache.memory_values, cross_mask), y)
        return self.feed_forward(y)


@dataclass
class LayerCache:
    """One decoder layer's keys and values: of the positions decoded so far (N, h, t, D/h), grown
    by :meth:`append`, and of the memory (N, h, S, D/h), fixed."""

    keys: torch.Tensor
    values: torch.Tensor
    memory_keys: torch.Tensor
    memory_values: torch.Tensor

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        self.keys = torch.cat([self.keys, keys], dim=2)
        self.values = torch.cat([self.values, values], dim=2)

    def select(self, rows: torch.Tensor) -> None:
        """Keep the rows ``rows`` (N',) of the decoded positions' keys and values, in that order
        (beam search's surviving hypotheses; their memory rows are the same source's)."""
        self.keys, self.values = self.keys[rows], self.values[rows]


class Seq2SeqTransformer(nn.Module):
    """Token ids in, next-token logits out; initialises its own weights (Xavier-uniform matrices)."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.config = config
        self.source_embedding = nn.Embedding(config.source_vocab_size, config.width, padding_idx=PAD)
        self.target_embedding = nn.Embedding(config.target_vocab_size, config.width, padding_idx=PAD)
        # max_len + 2 positions: BOS and EOS besides max_len tokens.
        self.register_buffer("positions", sinusoidal_positions(config.max_len + 2, config.width),
                             persistent=False)
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.encoder = nn.ModuleList(EncoderBlock(config) for _ in range(config.encoder_layers))
        self.decoder = nn.ModuleList(DecoderBlock(config) for _ in range(config.decoder_layers))
        # Pre-norm stacks end with a norm (their residual stream is never normalised otherwise).
        self.encoder_norm = nn.LayerNorm(config.width) if config.norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(config.width) if config.norm_first else nn.Identity()
        self.head = nn.Linear(config.width, config.target_vocab_size, bias=False)
        self._init_weights()
        if config.tie_embeddings:
            self.head.weight = self.target_embedding.weight

    def _init_weights(self) -> None:
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)
        for embedding in (self.source_embedding, self.target_embedding):
            nn.init.normal_(embedding.weight, std=self.config.width ** -0.5)  # times sqrt(D): unit scale
            with torch.no_grad():
                embedding.weight[PAD].zero_()

    def _embed(self, embedding: nn.Embedding, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        """ids (N, L) at positions start..start+L-1 -> (N, L, D): embedding * sqrt(D) + positions,
        then dropout."""
        end = start + ids.shape[1]
        if end > self.positions.shape[0]:
            raise ValueError(f"sequence of {end} tokens is longer than max_len + 2 = "
                             f"{self.positions.shape[0]}; build the model with a larger max_len")
        scaled = embedding(ids) * math.sqrt(self.config.width)
        return self.embedding_dropout(scaled + self.positions[start:end])

    def encode(self, source: torch.Tensor, source_mask: torch.Tensor) -> torch.Tensor:
        """source ids (N, S), PAD-padded, and their ``padding_mask`` (N, 1, 1, S) -> memory (N, S, D)."""
        x = self._embed(self.source_embedding, source)
        for block in self.encoder:
            x = block(x, source_mask)
        return self.encoder_norm(x)

    def decode(self, target: torch.Tensor, memory: torch.Tensor, source_mask: torch.Tensor) -> torch.Tensor:
        """target ids (N, T) (BOS first), memory (N, S, D) and the source's ``padding_mask``
        (N, 1, 1, S) -> logits (N, T, V); the logits at t depend only on target[:, :t+1] and the
        real source tokens."""
        self_mask = causal_mask(target.shape[1], target.device) & padding_mask(target)  # (N, 1, T, T)
        y = self._embed(self.target_embedding, target)
        for block in self.decoder:
            y = block(y, memory, self_mask, source_mask)
        return self.head(self.decoder_norm(y))

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: source (N, S), target input (N, T) -> logits (N, T, V)."""
        source_mask = padding_mask(source)
        return self.decode(target, self.encode(source, source_mask), source_mask)


class DecoderState:
    """The decoder of one batch of sources, fed one token per row at a time (:meth:`step`), with
    rows reordered between steps (:meth:`select`, for beam search).

    With ``cache`` (the default) each layer keeps the keys and values of the positions fed so far
    (:class:`LayerCache`) and the memory's, and a step runs the decoder over its one new position;
    without, a step re-runs the decoder over every position fed so far. Both give the same logits,
    up to floating-point rounding. The model should be in eval mode (dropout off)."""

    def __init__(self, model: Seq2SeqTransformer, memory: torch.Tensor, source_mask: torch.Tensor,
                 cache: bool = True) -> None:
        self.model, self.memory, self.source_mask = model, memory, source_mask
        n_batch = len(memory)
        self.fed = torch.empty(n_batch, 0, dtype=torch.long, device=memory.device)  # (N, t)
        self.layers: list[LayerCache] | None = None
        if cache:
            empty = memory.new_empty(n_batch, model.config.heads, 0, model.config.width // model.config.heads)
            self.layers = [LayerCache(empty, empty, *block.cross_attention.layer.keys_values(memory))
                           for block in model.decoder]

    def step(self, token: torch.Tensor) -> torch.Tensor:
        """Feed token (N,) at the next position -> the next token's logits (N, V)."""
        position = self.fed.shape[1]
        self.fed = torch.cat([self.fed, token[:, None]], dim=1)
        if self.layers is None:
            return self.model.decode(self.fed, self.memory, self.source_mask)[:, -1]
        model = self.model
        y = model._embed(model.target_embedding, token[:, None], start=position)  # (N, 1, D)
        self_mask = padding_mask(self.fed)  # the new query sees every position fed, PAD excepted
        for block, cache in zip(model.decoder, self.layers, strict=True):
            y = block.step(y, cache, self_mask, self.source_mask)
        return model.head(model.decoder_norm(y))[:, -1]

    def select(self, rows: torch.Tensor) -> None:
        """Keep rows ``rows`` (N,) in that order, for the next step; each row's memory stays its
        own source's (``rows`` only moves hypotheses among copies of one source)."""
        self.fed = self.fed[rows]
        for cache in self.layers or ():
            cache.select(rows)


@torch.no_grad()
def greedy_decode(model: Seq2SeqTransformer, source: torch.Tensor,
                  max_len: int | None = None, cache: bool = True) -> torch.Tensor:
    """The most likely next token, step by step: source (N, S) -> ids (N, L) without BOS, each row
    ending at its first EOS (then PAD), L <= max_len + 1 (default the config's max_len).
    ``cache``: see :class:`DecoderState`."""
    max_len = model.config.max_len if max_len is None else max_len
    source_mask = padding_mask(source)
    decoder = DecoderState(model, model.encode(source, source_mask), source_mask, cache)
    token = torch.full((len(source),), BOS, dtype=torch.long, device=source.device)
    done = torch.zeros(len(source), dtype=torch.bool, device=source.device)
    output = []
    for _ in range(max_len + 1):
        token = decoder.step(token).argmax(-1).masked_fill(done, PAD)
        output.append(token)
        done |= token == EOS
        if done.all():
            break
    return torch.stack(output, dim=1)


@torch.no_grad()
def beam_search(model: Seq2SeqTransformer, source: torch.Tensor, width: int,
                max_len: int | None = None, cache: bool = True) -> torch.Tensor:
    """The best of ``width`` hypotheses kept per source at every step, ranked at the end with GNMT's
    length penalty: source (N, S) -> ids (N, L) as :func:`greedy_decode` returns them. Width 1 is
    greedy decoding. ``cache``: see :class:`DecoderState`."""
    if width < 1:
        raise ValueError(f"beam width {width} must be at least 1")
    max_len = model.config.max_len if max_len is None else max_len
    n_batch, device = len(source), source.device
    source_mask = padding_mask(source)
    memory = model.encode(source, source_mask).repeat_interleave(width, dim=0)  # (N*B, S, D)
    decoder = DecoderState(model, memory, source_mask.repeat_interleave(width, dim=0), cache)
    token = torch.full((n_batch * width,), BOS, dtype=torch.long, device=device)
    output = torch.empty(n_batch * width, 0, dtype=torch.long, device=device)
    scores = torch.full((n_batch, width), -math.inf, device=device)
    scores[:, 0] = 0.0  # one live hypothesis per source at the start, so no beam is repeated
    lengths = torch.zeros(n_batch, width, device=device)  # tokens up to and including EOS
    done = torch.zeros(n_batch * width, dtype=torch.bool, device=device)
    for _ in range(max_len + 1):
        log_probs = F.log_softmax(decoder.step(token).float(), dim=-1)  # (N*B, V)
        n_vocab = log_probs.shape[-1]
        # A finished hypothesis continues only with PAD, at no cost, and keeps its length.
        log_probs[done] = -math.inf
        log_probs[done, PAD] = 0.0
        candidates = (scores[:, :, None] + log_probs.view(n_batch, width, n_vocab)).view(n_batch, -1)
        scores, flat = candidates.topk(width, dim=-1)  # (N, B)
        origin = (flat // n_vocab + torch.arange(n_batch, device=device)[:, None] * width).view(-1)
        token = (flat % n_vocab).view(-1)
        lengths = lengths.view(-1)[origin].view(n_batch, width) + (~done[origin]).view(n_batch, width).float()
        output = torch.cat([output[origin], token[:, None]], dim=1)
        done = done[origin] | (token == EOS)
        decoder.select(origin)
        if done.all():
            break
    penalty = ((5.0 + lengths) / 6.0) ** _LENGTH_PENALTY
    best = (scores / penalty).argmax(-1) + torch.arange(n_batch, device=device) * width  # (N,)
    return output[best]
