"""DARTS' candidate operations and genotypes, without training: every op keeps (N, C, H, W) at
stride 1 and halves the side (rounding up) at stride 2, for even and odd sides, with and without
BatchNorm's affine parameters; a MixedOp with a one-hot weight vector is that op; the derivation
of a genotype from hand-set architecture weights (``none`` never chosen, ties, the top-2 edges of
each node), and its invariants on random weights and random genotypes; the JSON shape and round
trip, and the one-line refusal of malformed genotypes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from tuneforge.errors import ConfigError
from tuneforge.trainables.darts.genotypes import (
    DARTS_V1,
    DARTS_V2,
    GENOTYPES,
    Genotype,
    derive,
    derive_cell,
    n_edges,
    random_genotype,
)
from tuneforge.trainables.darts.operations import OPS, PRIMITIVES, FactorizedReduce, ReLUConvBN, Zero
from tuneforge.trainables.darts.search_model import MixedOp, channel_shuffle

N, C = 2, 4
"""Batch and channels of the op tests: more than one image, so that BatchNorm has batch statistics."""
STEPS = 4
E, K = n_edges(STEPS), len(PRIMITIVES)
OP_INDEX = {name: k for k, name in enumerate(PRIMITIVES)}


def _x(side: int, channels: int = C, seed: int = 0) -> torch.Tensor:
    return torch.randn(N, channels, side, side, generator=torch.Generator().manual_seed(seed))


# -- operations --------------------------------------------------------------------------------


def test_primitives_are_the_papers_eight_with_none_first() -> None:
    assert PRIMITIVES == (
        "none",
        "max_pool_3x3",
        "avg_pool_3x3",
        "skip_connect",
        "sep_conv_3x3",
        "sep_conv_5x5",
        "dil_conv_3x3",
        "dil_conv_5x5",
    )
    assert (E, K) == (14, 8)


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no-affine"])
@pytest.mark.parametrize("side", [8, 7])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name", PRIMITIVES)
def test_every_op_keeps_the_shape_at_stride_1_and_halves_the_side_rounding_up_at_stride_2(
    name: str, stride: int, side: int, affine: bool
) -> None:
    torch.manual_seed(0)
    op = OPS[name](C, stride, affine)
    out = op(_x(side))
    expected = math.ceil(side / stride)
    assert out.shape == (N, C, expected, expected)
    assert torch.isfinite(out).all()
    norms = [m for m in op.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(m.affine is affine for m in norms), "affine reaches every BatchNorm of the op"
    if not affine:
        assert all(not list(m.parameters()) for m in norms), "without affine, BN has no parameters"
        if name in ("none", "max_pool_3x3", "avg_pool_3x3"):
            assert not list(op.parameters())


@pytest.mark.parametrize("stride", [1, 2])
def test_the_zero_op_is_zeros_and_skip_is_the_identity_at_stride_1(stride: int) -> None:
    x = _x(7)
    zeros = OPS["none"](C, stride, True)(x)
    assert isinstance(OPS["none"](C, stride, True), Zero)
    assert zeros.shape == (N, C, math.ceil(7 / stride), math.ceil(7 / stride)) and not zeros.any()
    skip = OPS["skip_connect"](C, stride, True)
    if stride == 1:
        assert isinstance(skip, nn.Identity) and torch.equal(skip(x), x)
    else:
        assert isinstance(skip, FactorizedReduce)


def test_pooling_ops_are_followed_by_batchnorm() -> None:
    for name in ("max_pool_3x3", "avg_pool_3x3"):
        op = OPS[name](C, 1, True)
        assert isinstance(op[0], (nn.MaxPool2d, nn.AvgPool2d)) and isinstance(op[1], nn.BatchNorm2d)


@pytest.mark.parametrize("side", [8, 7, 1])
def test_factorized_reduce_halves_the_side_and_changes_the_channels(side: int) -> None:
    out = FactorizedReduce(C, 6)(_x(side))
    assert out.shape == (N, 6, math.ceil(side / 2), math.ceil(side / 2))


def test_factorized_reduce_refuses_an_odd_number_of_output_channels() -> None:
    with pytest.raises(ValueError, match="FactorizedReduce: c_out must be even, got 5"):
        FactorizedReduce(C, 5)


def test_relu_conv_bn_is_relu_then_convolution_then_batchnorm() -> None:
    op = ReLUConvBN(C, 6, 1, 1, 0, affine=False)
    assert [type(m) for m in op] == [nn.ReLU, nn.Conv2d, nn.BatchNorm2d]
    assert op(_x(5)).shape == (N, 6, 5, 5)


# -- MixedOp -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stride", [1, 2])
def test_a_mixed_op_with_one_hot_weights_is_that_op(stride: int) -> None:
    torch.manual_seed(0)
    mixed = MixedOp(C, stride)
    x = _x(7)
    with torch.no_grad():
        for k, name in enumerate(PRIMITIVES):
            one_hot = torch.zeros(K)
            one_hot[k] = 1.0
            assert torch.equal(mixed(x, one_hot), mixed.ops[k](x)), name


@pytest.mark.parametrize(("stride", "side"), [(1, 7), (2, 7), (2, 8)])
def test_a_partial_channel_mixed_op_mixes_a_quarter_and_passes_the_rest_shuffled(stride: int,
                                                                                 side: int) -> None:
    torch.manual_seed(0)
    c, partial = 8, 4
    mixed = MixedOp(c, stride, partial)
    assert all(op_channels(op) in (None, c // partial) for op in mixed.ops), "the ops see C/P channels"
    x, weights = torch.randn(2, c, side, side), torch.softmax(torch.randn(K), dim=0)
    with torch.no_grad():
        out = mixed(x, weights)
        out_side = -(-side // stride)
        assert out.shape == (2, c, out_side, out_side)
        unshuffled = channel_shuffle(out, c // partial)  # shuffling by the other factor undoes it
        expected_mixed = sum(w * op(x[:, :c // partial]) for w, op in zip(weights, mixed.ops, strict=True))
        torch.testing.assert_close(unshuffled[:, :c // partial], expected_mixed)
        rest = x[:, c // partial:]
        passed = rest if stride == 1 else F.max_pool2d(rest, 2, 2, ceil_mode=True)
        assert torch.equal(unshuffled[:, c // partial:], passed)


def test_channel_shuffle_interleaves_the_groups() -> None:
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
    assert torch.equal(channel_shuffle(channel_shuffle(x, 2), 3), x)


def op_channels(op: nn.Module) -> int | None:
    """The input channels of an op's first convolution (None for pooling, skip and zero)."""
    convs = [m for m in op.modules() if isinstance(m, nn.Conv2d)]
    return convs[0].in_channels if convs else None


def test_a_mixed_op_is_the_weighted_sum_of_every_candidate() -> None:
    torch.manual_seed(0)
    mixed = MixedOp(C, 1)
    x, weights = _x(6), torch.softmax(torch.randn(K), dim=0)
    with torch.no_grad():
        expected = sum(w * op(x) for w, op in zip(weights, mixed.ops, strict=True))
        torch.testing.assert_close(mixed(x, weights), expected)
    assert next(type(op) for op in mixed.ops) is Zero and len(mixed.ops) == K
    norms = [m for m in mixed.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and not any(m.affine for m in norms), "the supernet's ops have no BN affine (the paper's)"


# -- derivation from hand-set weights ----------------------------------------------------------


def _row(**weights: float) -> np.ndarray:
    """An edge's softmaxed weights (K,): the ops given, and ``none`` the rest of the unit mass."""
    row = np.zeros(K)
    for name, value in weights.items():
        row[OP_INDEX[name]] = value
    row[OP_INDEX["none"]] = 1.0 - row.sum()
    assert row.min() >= 0
    return row


HAND_SET = np.stack(
    [
        # node 0 (inputs 0, 1): both edges, whatever their strength; edge 0's `none` is its largest
        _row(sep_conv_3x3=0.05, max_pool_3x3=0.01),
        _row(skip_connect=0.03),
        # node 1 (inputs 0, 1, 2): edge 2 holds the largest weight of the node, all of it `none`
        _row(sep_conv_5x5=0.001, avg_pool_3x3=0.0005),
        _row(dil_conv_3x3=0.4, sep_conv_3x3=0.1),
        _row(max_pool_3x3=0.3),
        # node 2 (inputs 0..3): the two strongest edges, 1 and 3, listed by input
        _row(sep_conv_5x5=0.2),
        _row(avg_pool_3x3=0.5, skip_connect=0.45),
        _row(skip_connect=0.1, dil_conv_5x5=0.05),
        _row(dil_conv_5x5=0.6),
        # node 3 (inputs 0..4): every edge's strongest op weighs 0.3: the earlier edges and ops win
        _row(max_pool_3x3=0.3, sep_conv_3x3=0.3),
        _row(avg_pool_3x3=0.3, dil_conv_5x5=0.3),
        _row(skip_connect=0.3),
        _row(sep_conv_5x5=0.3, dil_conv_3x3=0.2),
        _row(dil_conv_3x3=0.3),
    ]
)
HAND_SET_CELL = (
    ("sep_conv_3x3", 0),
    ("skip_connect", 1),
    ("dil_conv_3x3", 1),
    ("max_pool_3x3", 2),
    ("avg_pool_3x3", 1),
    ("dil_conv_5x5", 3),
    ("max_pool_3x3", 0),
    ("avg_pool_3x3", 1),
)


def test_derive_cell_of_hand_set_weights_is_the_expected_cell() -> None:
    assert HAND_SET.shape == (E, K)
    np.testing.assert_allclose(HAND_SET.sum(axis=1), 1.0)
    assert (HAND_SET.argmax(axis=1)[[0, 1, 2, 5, 7]] == OP_INDEX["none"]).all(), "none leads these edges"
    assert derive_cell(HAND_SET, STEPS) == HAND_SET_CELL


def test_derive_never_chooses_none_even_where_it_weighs_everything() -> None:
    weights = np.zeros((E, K))
    weights[:, OP_INDEX["none"]] = 1.0  # every edge all `none` but one op at a tiny weight
    weights[np.arange(E), 1 + np.arange(E) % (K - 1)] = 1e-9
    cell = derive_cell(weights, STEPS)
    assert all(op != "none" for op, _ in cell)
    assert cell[:2] == (("max_pool_3x3", 0), ("avg_pool_3x3", 1))


def test_derive_ties_go_to_the_earlier_edge_and_the_earlier_op() -> None:
    uniform = np.full((E, K), 1.0 / K)
    cell = derive_cell(uniform, STEPS)
    assert cell == tuple(pair for _ in range(STEPS) for pair in (("max_pool_3x3", 0), ("max_pool_3x3", 1)))


def test_derive_picks_each_nodes_two_strongest_edges_in_input_order() -> None:
    weights = np.full((E, K), 0.01)
    offset = 0
    for node in range(STEPS):  # the last input and the first strongest: inputs (0, 1 + node)
        weights[offset + 1 + node, OP_INDEX["sep_conv_5x5"]] = 0.5
        weights[offset, OP_INDEX["dil_conv_3x3"]] = 0.9
        offset += 2 + node
    cell = derive_cell(weights, STEPS)
    assert cell == tuple(
        pair for node in range(STEPS) for pair in (("dil_conv_3x3", 0), ("sep_conv_5x5", 1 + node))
    )


def test_derive_gives_both_cells_and_concatenates_every_node() -> None:
    reverse = HAND_SET[::-1].copy()
    genotype = derive(HAND_SET, reverse, steps=STEPS)
    assert genotype.normal == HAND_SET_CELL and genotype.reduce == derive_cell(reverse, STEPS)
    assert genotype.normal_concat == genotype.reduce_concat == (2, 3, 4, 5)
    assert genotype.steps == STEPS


def test_derive_refuses_weights_of_the_wrong_shape() -> None:
    with pytest.raises(AssertionError, match="weights"):
        derive_cell(np.ones((E - 1, K)), STEPS)


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5])
def test_n_edges_is_the_sum_of_each_nodes_inputs(steps: int) -> None:
    assert n_edges(steps) == {1: 2, 2: 5, 3: 9, 4: 14, 5: 20}[steps]


# -- invariants on random weights and random genotypes -----------------------------------------


def _check_cell(cell, steps: int) -> None:
    """Two pairs per node, two distinct inputs each, every input one the node can see, no ``none``."""
    assert len(cell) == 2 * steps
    for node in range(steps):
        (op_a, a), (op_b, b) = cell[2 * node], cell[2 * node + 1]
        assert a != b, f"node {node} takes one input twice"
        assert 0 <= a < 2 + node and 0 <= b < 2 + node
        assert "none" not in (op_a, op_b) and {op_a, op_b} <= set(PRIMITIVES)
        assert isinstance(a, int) and isinstance(b, int)


def _check_genotype(genotype: Genotype, steps: int) -> None:
    _check_cell(genotype.normal, steps)
    _check_cell(genotype.reduce, steps)
    assert genotype.normal_concat == genotype.reduce_concat == tuple(range(2, 2 + steps))
    assert Genotype.from_dict(genotype.to_dict()) == genotype, "a valid genotype"


def _reference_cell(weights: np.ndarray, steps: int):
    """The derivation written out with Python's sorted (stable) over each node's edges."""
    cell, start = [], 0
    ops = [k for k, name in enumerate(PRIMITIVES) if name != "none"]
    for node in range(steps):
        edges = range(2 + node)
        strength = {j: max(weights[start + j][k] for k in ops) for j in edges}
        chosen = sorted(sorted(edges, key=lambda j: -strength[j])[:2])
        for j in chosen:
            best = max(ops, key=lambda k: (weights[start + j][k], -k))
            cell.append((PRIMITIVES[best], j))
        start += 2 + node
    return tuple(cell)


@pytest.mark.parametrize("steps", [2, 4])
def test_derive_of_random_weights_always_gives_a_valid_genotype(steps: int) -> None:
    for seed in range(50):
        rng = np.random.default_rng(seed)
        alphas = rng.normal(scale=3.0, size=(2, n_edges(steps), K))  # spread: `none` often leads
        alphas[:, :, OP_INDEX["none"]] += 2.0
        normal, reduce = (np.exp(a) / np.exp(a).sum(axis=1, keepdims=True) for a in alphas)
        genotype = derive(normal, reduce, steps=steps)
        _check_genotype(genotype, steps)
        assert genotype.normal == _reference_cell(normal, steps), seed
        assert genotype.reduce == _reference_cell(reduce, steps), seed


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_random_genotypes_are_valid_reproducible_and_cover_the_space(steps: int) -> None:
    seen_ops, seen_inputs = set(), set()
    for seed in range(200):
        genotype = random_genotype(np.random.default_rng(seed), steps=steps)
        _check_genotype(genotype, steps)
        assert genotype == random_genotype(np.random.default_rng(seed), steps=steps)
        seen_ops |= {op for op, _ in genotype.normal + genotype.reduce}
        seen_inputs |= {(k // 2, source) for k, (_, source) in enumerate(genotype.normal)}
    assert seen_ops == set(PRIMITIVES) - {"none"}, "every op but none is drawn"
    assert seen_inputs == {(node, j) for node in range(steps) for j in range(2 + node)}, (
        "every input is drawn"
    )


def test_random_genotypes_of_different_seeds_differ() -> None:
    drawn = {random_genotype(np.random.default_rng(seed)) for seed in range(20)}
    assert len(drawn) == 20


# -- JSON ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "genotype",
    [
        DARTS_V1,
        DARTS_V2,
        random_genotype(np.random.default_rng(3)),
        random_genotype(np.random.default_rng(4), steps=2),
    ],
    ids=["darts-v1", "darts-v2", "random", "random-2-steps"],
)
def test_json_round_trip(genotype: Genotype) -> None:
    assert Genotype.from_json(genotype.to_json()) == genotype
    assert Genotype.from_dict(json.loads(json.dumps(genotype.to_dict(), indent=1))) == genotype


def test_the_json_shape_is_the_darts_repositorys() -> None:
    value = json.loads(DARTS_V2.to_json())
    assert value == {
        "normal": [
            ["sep_conv_3x3", 0],
            ["sep_conv_3x3", 1],
            ["sep_conv_3x3", 0],
            ["sep_conv_3x3", 1],
            ["sep_conv_3x3", 1],
            ["skip_connect", 0],
            ["skip_connect", 0],
            ["dil_conv_3x3", 2],
        ],
        "normal_concat": [2, 3, 4, 5],
        "reduce": [
            ["max_pool_3x3", 0],
            ["max_pool_3x3", 1],
            ["skip_connect", 2],
            ["max_pool_3x3", 1],
            ["max_pool_3x3", 0],
            ["skip_connect", 2],
            ["skip_connect", 2],
            ["max_pool_3x3", 1],
        ],
        "reduce_concat": [2, 3, 4, 5],
    }
    assert DARTS_V2.to_dict() == value and DARTS_V2.steps == 4


def test_the_bundled_genotypes_are_named_and_immutable() -> None:
    assert GENOTYPES == {"darts-v1": DARTS_V1, "darts-v2": DARTS_V2}
    assert DARTS_V1 != DARTS_V2 and hash(DARTS_V2) == hash(Genotype.from_json(DARTS_V2.to_json()))
    with pytest.raises(AttributeError):
        DARTS_V2.normal = ()  # type: ignore[misc]


def _v2(**changes) -> dict:
    value = DARTS_V2.to_dict()
    value.update(changes)
    return value


def _normal_with(index: int, pair) -> dict:
    value = DARTS_V2.to_dict()
    value["normal"][index] = pair
    return value


BAD_GENOTYPES = {
    "unknown op": (
        _normal_with(0, ["conv_7x7", 0]),
        r"normal\[0\]: unknown op 'conv_7x7'; valid: max_pool_3x3",
    ),
    "none": (_normal_with(3, ["none", 1]), r"normal\[3\]: unknown op 'none'"),
    "op that is a number": (_normal_with(0, [3, 0]), r"normal\[0\]: unknown op 3"),
    "input out of range": (
        _normal_with(2, ["sep_conv_3x3", 3]),
        r"normal\[2\]: node 1 takes inputs 0..2, got 3",
    ),
    "negative input": (
        _normal_with(0, ["sep_conv_3x3", -1]),
        r"normal\[0\]: node 0 takes inputs 0..1, got -1",
    ),
    "input that is a boolean": (
        _normal_with(0, ["sep_conv_3x3", True]),
        r"node 0 takes inputs 0..1, got True",
    ),
    "input that is text": (_normal_with(0, ["sep_conv_3x3", "0"]), r"node 0 takes inputs 0..1, got '0'"),
    "odd number of pairs": (
        _v2(normal=DARTS_V2.to_dict()["normal"][:7]),
        r"normal: expected a non-empty list of \[op, input\] pairs, two per node",
    ),
    "no pairs": (_v2(reduce=[]), r"reduce: expected a non-empty list of \[op, input\] pairs"),
    "a pair of three": (_normal_with(1, ["sep_conv_3x3", 1, 2]), r"normal\[1\]: expected \[op, input\], got"),
    "cells of different sizes": (
        _v2(reduce=DARTS_V2.to_dict()["reduce"][:6]),
        "normal has 4 nodes and reduce 3; both cells need the same number",
    ),
    "concat out of range": (
        _v2(normal_concat=[2, 3, 4, 6]),
        r"normal_concat: expected intermediate states out of \[2, 3, 4, 5\], got \[2, 3, 4, 6\]",
    ),
    "concat of an input": (_v2(reduce_concat=[0, 2]), r"reduce_concat: expected intermediate states"),
    "missing keys": (
        {"normal": DARTS_V2.to_dict()["normal"]},
        "a genotype needs normal_concat, reduce, reduce_concat",
    ),
    "not a mapping": (
        [["sep_conv_3x3", 0]],
        "a genotype is a mapping with normal, normal_concat, reduce and reduce_concat, not list",
    ),
}


@pytest.mark.parametrize(("value", "message"), BAD_GENOTYPES.values(), ids=BAD_GENOTYPES.keys())
def test_from_dict_refuses_a_malformed_genotype_naming_the_problem(value, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        Genotype.from_dict(value)
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match=message):
        Genotype.from_json(json.dumps(value))
