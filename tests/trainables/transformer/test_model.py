"""The seq2seq Transformer's modules and decoding: shapes, masks (causal and padding), decoding
on a copy task, and the config's refusals."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn import functional as F

from tuneforge.errors import ConfigError
from tuneforge.trainables.transformer.model import (
    BOS,
    EOS,
    PAD,
    SelfAttention,
    Seq2SeqConfig,
    Seq2SeqTransformer,
    beam_search,
    causal_mask,
    greedy_decode,
    padding_mask,
)


def _model(**changes) -> Seq2SeqTransformer:
    torch.manual_seed(0)
    config = {"source_vocab_size": 20, "target_vocab_size": 30, "width": 32, "heads": 4,
              "encoder_layers": 2, "decoder_layers": 2, "dropout": 0.0, **changes}
    return Seq2SeqTransformer(Seq2SeqConfig(**config)).eval()


def _ids(low: int, high: int, *shape: int) -> torch.Tensor:
    return torch.randint(low, high, shape, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("tie_embeddings", [True, False])
def test_logits_have_one_row_per_target_position_and_one_column_per_token(norm_first, tie_embeddings) -> None:
    model = _model(norm_first=norm_first, tie_embeddings=tie_embeddings)
    logits = model(_ids(4, 20, 3, 7), _ids(4, 30, 3, 5))
    assert logits.shape == (3, 5, 30) and torch.isfinite(logits).all()
    assert (model.head.weight is model.target_embedding.weight) == tie_embeddings


def test_a_later_target_token_changes_no_earlier_output() -> None:
    """The causal mask: the logits at position t depend on target tokens 0..t only."""
    model = _model()
    source, target = _ids(4, 20, 2, 6), _ids(4, 30, 2, 8)
    before = model(source, target)
    for t in range(1, 8):
        changed = target.clone()
        changed[:, t] = (changed[:, t] - 4 + 1) % 26 + 4  # another real token
        after = model(source, changed)
        torch.testing.assert_close(after[:, :t], before[:, :t], rtol=0, atol=1e-6)
        assert not torch.allclose(after[:, t:], before[:, t:]), f"position {t} must see its own token"


def test_a_padded_position_changes_no_other_output() -> None:
    """Padding masks: what stands in a padded source or target position reaches no real position."""
    model = _model()
    source = torch.tensor([[5, 6, 7, PAD, PAD]])
    target = torch.tensor([[BOS, 8, 9, PAD, PAD]])
    reference = model(source, target)[:, :3]
    # Same lengths, other contents at the padded positions: a model that masks keys by id would see
    # these as PAD only where they are PAD, so put real tokens there and mask by the original ids.
    memory = model.encode(source, padding_mask(source))
    longer_source = torch.tensor([[5, 6, 7, PAD, PAD, PAD, PAD]])
    longer = model.encode(longer_source, padding_mask(longer_source))
    torch.testing.assert_close(longer[:, :3], memory[:, :3], rtol=0, atol=1e-6)
    more_padding = model(torch.tensor([[5, 6, 7, PAD, PAD, PAD]]),
                         torch.tensor([[BOS, 8, 9, PAD, PAD, PAD, PAD]]))
    torch.testing.assert_close(more_padding[:, :3], reference, rtol=0, atol=1e-6)
    # The padded key itself: a hidden state of a PAD position never enters a real one.
    hook_output = {}
    encoder_block = model.encoder[0]
    original = encoder_block.forward

    def poisoned(x, mask):
        x = x.clone()
        x[:, 3:] = 1e4  # the padded positions' states, poisoned before the first block
        hook_output["seen"] = True
        return original(x, mask)

    encoder_block.forward = poisoned
    poisoned_memory = model.encode(source, padding_mask(source))
    assert hook_output["seen"]
    torch.testing.assert_close(poisoned_memory[:, :3], memory[:, :3], rtol=0, atol=1e-5)


def test_the_output_of_a_pad_free_batch_matches_each_sequence_alone() -> None:
    """Batching sequences of one length (no PAD anywhere) gives each the output it has alone."""
    model = _model()
    sources, targets = _ids(4, 20, 3, 5), _ids(4, 30, 3, 6)
    targets[:, 0] = BOS
    assert (sources != PAD).all() and (targets != PAD).all()
    batch = model(sources, targets)
    for row in range(3):
        alone = model(sources[row:row + 1], targets[row:row + 1])[0]
        torch.testing.assert_close(batch[row], alone, rtol=0, atol=1e-5)


def test_the_output_of_a_padded_batch_matches_each_sequence_alone() -> None:
    """Batching with padding gives every sequence the output it has alone."""
    model = _model()
    short_source, long_source = torch.tensor([[5, 6]]), torch.tensor([[7, 8, 9, 10]])
    short_target, long_target = torch.tensor([[BOS, 11]]), torch.tensor([[BOS, 12, 13, 14]])
    batch = model(torch.tensor([[5, 6, PAD, PAD], [7, 8, 9, 10]]),
                  torch.tensor([[BOS, 11, PAD, PAD], [BOS, 12, 13, 14]]))
    torch.testing.assert_close(batch[0, :2], model(short_source, short_target)[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(batch[1], model(long_source, long_target)[0], rtol=0, atol=1e-5)


def test_the_masks_say_which_keys_each_query_may_attend_to() -> None:
    assert torch.equal(causal_mask(4)[0, 0], torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0],
                                                            [1, 1, 1, 1]], dtype=torch.bool))
    assert causal_mask(4).shape == (1, 1, 4, 4)
    ids = torch.tensor([[BOS, 8, PAD], [BOS, PAD, PAD]])
    expected = torch.tensor([[True, True, False], [True, False, False]])[:, None, None]  # (N, 1, 1, L)
    assert torch.equal(padding_mask(ids), expected)


def test_through_the_causal_mask_a_later_token_changes_no_earlier_output() -> None:
    """One self-attention under ``causal_mask``: changing position t moves outputs t.. only; without
    the mask, it moves them all (the check bites)."""
    torch.manual_seed(0)
    attention = SelfAttention(Seq2SeqConfig(width=16, heads=2, dropout=0.0)).eval()
    x = torch.randn(2, 6, 16, generator=torch.Generator().manual_seed(3))
    mask, open_mask = causal_mask(6), torch.ones(1, 1, 6, 6, dtype=torch.bool)
    before, open_before = attention(x, mask), attention(x, open_mask)
    for t in range(6):
        changed = x.clone()
        changed[:, t] += 1.0
        after = attention(changed, mask)
        torch.testing.assert_close(after[:, :t], before[:, :t], rtol=0, atol=0)
        assert not torch.allclose(after[:, t:], before[:, t:])
        if t > 0:
            assert not torch.allclose(attention(changed, open_mask)[:, :t], open_before[:, :t])


def _copy_batch(generator: torch.Generator, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Sources of 3-6 tokens from 4..11, PAD-padded; targets the same tokens, then EOS."""
    lengths = torch.randint(3, 7, (n,), generator=generator)
    tokens = torch.randint(4, 12, (n, 6), generator=generator)
    positions = torch.arange(6)[None]
    source = tokens.masked_fill(positions >= lengths[:, None], PAD)
    target = torch.cat([source, torch.full((n, 1), PAD)], dim=1)
    target[torch.arange(n), lengths] = EOS
    return source, target


@pytest.fixture(scope="module")
def copier() -> Seq2SeqTransformer:
    """A tiny model trained 300 steps to copy its input."""
    model = _model(source_vocab_size=12, target_vocab_size=12, label_smoothing=0.0, max_len=8).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):
        source, target = _copy_batch(generator)
        target_in = torch.cat([torch.full((len(source), 1), BOS), target[:, :-1]], dim=1)
        loss = F.cross_entropy(model(source, target_in).flatten(0, 1), target.flatten(), ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def test_greedy_decoding_of_a_trained_copier_reproduces_its_inputs(copier) -> None:
    source, target = _copy_batch(torch.Generator().manual_seed(99), n=200)
    decoded = greedy_decode(copier, source)
    width = min(decoded.shape[1], target.shape[1])
    exact = (decoded[:, :width] == target[:, :width]).all(dim=1).float().mean()
    assert exact >= 0.95, f"only {exact:.2f} of the sources copied exactly"
    assert (decoded == EOS).any(dim=1).all(), "every output ends with EOS"


def test_beam_search_copies_too_and_width_one_is_greedy(copier) -> None:
    source, target = _copy_batch(torch.Generator().manual_seed(7), n=100)
    greedy = greedy_decode(copier, source)
    torch.testing.assert_close(beam_search(copier, source, 1), greedy)
    beamed = beam_search(copier, source, 4)
    width = min(beamed.shape[1], target.shape[1])
    assert (beamed[:, :width] == target[:, :width]).all(dim=1).float().mean() >= 0.95


def _padded_sources(n: int, vocab: int, seed: int) -> torch.Tensor:
    """n sources of 2-12 tokens from 4..vocab-1, PAD-padded."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 13, (n,), generator=generator)
    tokens = torch.randint(4, vocab, (n, 12), generator=generator)
    return tokens.masked_fill(torch.arange(12)[None] >= lengths[:, None], PAD)


@pytest.mark.parametrize("model_name", ["copier", "untrained pre-norm", "untrained post-norm"])
@pytest.mark.parametrize("beam_width", [1, 5])
def test_decoding_with_the_key_value_cache_gives_the_tokens_of_decoding_without(copier, model_name,
                                                                                beam_width) -> None:
    # In float64, so that the two paths' rounding cannot tip a near tie. The untrained models rarely
    # emit EOS, so their outputs run to max_len: every cached position is used.
    model = {"copier": copier, "untrained pre-norm": _model(max_len=24),
             "untrained post-norm": _model(max_len=24, norm_first=False)}[model_name]
    model = copy.deepcopy(model).double()
    source = (_copy_batch(torch.Generator().manual_seed(3), n=300)[0] if model_name == "copier"
              else _padded_sources(300, model.config.source_vocab_size, seed=3))
    decode = ((lambda **cache: greedy_decode(model, source, **cache)) if beam_width == 1
              else (lambda **cache: beam_search(model, source, beam_width, **cache)))
    cached, uncached = decode(cache=True), decode(cache=False)
    assert cached.shape == uncached.shape and cached.shape[0] == 300
    assert torch.equal(cached, uncached)
    if model_name == "copier":
        assert (cached == EOS).any(dim=1).all() and (cached == PAD).any(), "rows end, then pad"
    else:
        assert cached.shape[1] == model.config.max_len + 1, "outputs run to max_len"


def test_decoding_stops_at_max_len() -> None:
    model = _model(max_len=5)
    source = _ids(4, 20, 3, 4)
    assert greedy_decode(model, source).shape[1] <= 6 and beam_search(model, source, 3).shape[1] <= 6


def test_a_width_not_divisible_by_heads_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^width: 66 is not divisible by heads 4; choose a multiple of 4$"):
        Seq2SeqConfig(width=66, heads=4)


@pytest.mark.parametrize(("field", "value", "rule"), [
    ("encoder_layers", 0, "positive integer"),
    ("heads", -2, "positive integer"),
    ("width", 64.0, "positive integer"),
    ("max_len", True, "positive integer"),
    ("dropout", 1.0, "0 <= dropout < 1"),
    ("label_smoothing", -0.1, "0 <= label_smoothing < 1"),
    ("ffn_ratio", 0.0, "> 0"),
    ("norm_first", "yes", "true or false"),
])
def test_bad_values_are_refused_naming_the_field_value_and_rule(field, value, rule) -> None:
    with pytest.raises(ConfigError) as error:
        Seq2SeqConfig(**{field: value})
    message = str(error.value)
    assert message.startswith(f"{field}: {value!r}") and rule in message and "\n" not in message
