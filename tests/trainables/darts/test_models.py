"""The DARTS supernet, architecture step, discrete network and pictures, without a search:
the supernet's softmaxed architecture weights and its split of parameters; the discrete network's
size (DARTS_V2 at the paper's CIFAR-10 width), forward shapes and auxiliary head; drop-path; the
architecture step (only the alphas move, and a weight step moves only the weights), the
finite-difference Hessian-vector product and the second-order gradient against exact autograd in
float64; ``loss_at`` leaving the model's BatchNorm statistics alone; the PNG pictures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from tests.conftest import needs_graphviz
from tuneforge.errors import ConfigError
from tuneforge.trainables.darts import architect
from tuneforge.trainables.darts.architect import arch_gradients, arch_step, hessian_vector_product, loss_at
from tuneforge.trainables.darts.genotypes import DARTS_V1, DARTS_V2, Genotype, n_edges, random_genotype
from tuneforge.trainables.darts.model import DartsNetwork, NetworkCell, NetworkConfig, drop_path
from tuneforge.trainables.darts.operations import PRIMITIVES
from tuneforge.trainables.darts.pictures import alphas_heatmap_png, cells_png, edge_names
from tuneforge.trainables.darts.search_model import Supernet, SupernetConfig, reduction_layers

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
N_CLASSES = 3
TINY = {"channels": 4, "layers": 3, "image_size": 8, "in_channels": 1, "n_classes": N_CLASSES}
"""A supernet of seconds: 3 cells (the last two reductions), 4 channels, 8x8 grey images."""


def _batch(
    n: int = 6, side: int = 8, channels: int = 1, seed: int = 0, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, channels, side, side, generator=generator, dtype=dtype),
        torch.randint(0, N_CLASSES, (n,), generator=generator),
    )


def _supernet(seed: int = 0, **changes) -> Supernet:
    torch.manual_seed(seed)
    return Supernet(SupernetConfig(**{**TINY, **changes}))


def _snapshot(tensors) -> list[torch.Tensor]:
    return [t.detach().clone() for t in tensors]


def _identical(before: list[torch.Tensor], tensors) -> bool:
    return all(torch.equal(a, b) for a, b in zip(before, list(tensors), strict=True))


# -- the supernet ------------------------------------------------------------------------------


@pytest.mark.parametrize(("layers", "expected"), [(3, {1, 2}), (5, {1, 3}), (8, {2, 5}), (20, {6, 13})])
def test_reduction_cells_are_at_a_third_and_two_thirds_of_the_depth(layers: int, expected: set[int]) -> None:
    assert reduction_layers(layers) == expected


def test_the_supernets_softmaxed_weights_sum_to_one_per_edge() -> None:
    supernet = _supernet()
    with torch.no_grad():
        for alpha in supernet.arch_parameters():
            alpha.normal_(std=3.0)  # far from uniform
    normal, reduce = supernet.arch_weights()
    for weights in (normal, reduce):
        assert weights.shape == (n_edges(4), len(PRIMITIVES)) == (14, 8)
        assert weights.dtype == np.float32 and (weights > 0).all()
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=0, atol=1e-6)
    assert not np.allclose(normal, reduce), "each cell kind has its own alphas"


def test_the_supernet_starts_near_uniform_and_its_genotype_is_the_derivation_of_its_weights() -> None:
    supernet = _supernet()
    normal, _ = supernet.arch_weights()
    np.testing.assert_allclose(normal, 1 / len(PRIMITIVES), atol=1e-3)
    with torch.no_grad():
        supernet.alphas_normal.zero_()
        supernet.alphas_normal[:, PRIMITIVES.index("none")] = 5.0  # `none` leads every edge
        supernet.alphas_normal[:, PRIMITIVES.index("sep_conv_5x5")] = 2.0
    genotype = supernet.genotype()
    assert genotype.normal == tuple(
        pair for _ in range(4) for pair in (("sep_conv_5x5", 0), ("sep_conv_5x5", 1))
    )
    assert Genotype.from_json(genotype.to_json()) == genotype


def test_arch_parameters_and_weights_split_the_parameters() -> None:
    supernet = _supernet()
    arch, weights = supernet.arch_parameters(), list(supernet.weights())
    assert [a.shape for a in arch] == [(14, 8), (14, 8)]
    assert {id(p) for p in arch}.isdisjoint(id(p) for p in weights)
    assert {id(p) for p in arch} | {id(p) for p in weights} == {id(p) for p in supernet.parameters()}


@pytest.mark.parametrize("side", [8, 7])
def test_the_supernet_maps_images_to_logits(side: int) -> None:
    supernet = _supernet(image_size=side)
    images, _ = _batch(side=side)
    assert supernet(images).shape == (6, N_CLASSES)
    assert supernet.cells[1].reduction and not supernet.cells[0].reduction


# -- PC-DARTS: partial channels and edge normalisation ------------------------------------------


@pytest.mark.parametrize("side", [8, 7])
def test_a_partial_channel_supernet_maps_images_to_logits_with_a_quarter_of_the_op_weights(side: int) -> None:
    darts, pc = _supernet(image_size=side), _supernet(image_size=side, partial_channels=2)
    images, _ = _batch(side=side)
    assert pc(images).shape == (6, N_CLASSES)
    op_weights = [sum(p.numel() for name, p in net.named_parameters() if ".ops." in name)
                  for net in (darts, pc)]
    assert op_weights[1] < 0.6 * op_weights[0], op_weights  # ops at C/2 channels: about a quarter
    assert [a.shape for a in pc.arch_parameters()] == [(14, 8), (14, 8), (14,), (14,)]
    assert [a.shape for a in darts.arch_parameters()] == [(14, 8), (14, 8)], "P = 1 is DARTS"


def test_edge_normalisation_weighs_each_nodes_edges_and_steers_the_derivation() -> None:
    supernet = _supernet(partial_channels=2)
    with torch.no_grad():
        supernet.alphas_normal.zero_()
        supernet.alphas_normal[:, PRIMITIVES.index("sep_conv_3x3")] = 1.0  # every edge alike
        supernet.betas_normal.zero_()
        for edge in (0, 2, 4, 7, 9):  # node 0: edge 0 of (0, 1); node 1: edges 2, 4 of (2, 3, 4); ...
            supernet.betas_normal[edge] = 3.0
    shares = supernet._edge_weights(supernet.betas_normal.detach())
    for start, n in ((0, 2), (2, 3), (5, 4), (9, 5)):
        assert float(shares[start:start + n].sum()) == pytest.approx(1.0)
    normal, _ = supernet.arch_weights()
    np.testing.assert_allclose(normal.sum(axis=1), shares.numpy(), rtol=1e-6)
    genotype = supernet.genotype()  # the top two edges of each node by alpha * beta
    assert [source for _, source in genotype.normal[:4]] == [0, 1, 0, 2]
    assert {op for op, _ in genotype.normal} == {"sep_conv_3x3"}


@pytest.mark.parametrize("order", [1, 2])
def test_an_architecture_step_of_a_partial_channel_supernet_moves_its_alphas_and_betas(order: int) -> None:
    supernet = _supernet(partial_channels=2)
    optimizer = torch.optim.Adam(supernet.arch_parameters(), lr=1e-3)
    weights, arch = _snapshot(supernet.weights()), _snapshot(supernet.arch_parameters())
    loss = float(arch_step(supernet, optimizer, _batch(seed=1), _batch(seed=2), order=order, xi=0.01,
                           hvp="exact"))
    assert np.isfinite(loss) and loss > 0
    for before, after in zip(arch, supernet.arch_parameters(), strict=True):
        assert (before != after).float().mean() > 0.5, "alphas and betas move"
    assert _identical(weights, supernet.weights())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"partial_channels": 3}, "partial_channels: 3 does not divide channels 4; choose a divisor"),
        ({"channels": 3}, "channels: 3 is not allowed; it must be even"),
        ({"layers": 0}, "layers: 0 is not allowed; it must be a positive integer"),
        ({"stem_stride": 3}, "stem_stride: 3 is not allowed; it must be 1 or 2"),
        ({"steps": True}, "steps: True is not allowed"),
    ],
)
def test_a_bad_supernet_config_is_refused_in_one_line(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SupernetConfig(**{**TINY, **change})


@pytest.mark.parametrize("order", [1, 2])
def test_a_supernet_without_normal_cells_can_take_an_architecture_step(order: int) -> None:
    supernet = _supernet(layers=2)
    assert all(cell.reduction for cell in supernet.cells), "both cells reduce"
    optimizer = torch.optim.Adam(supernet.arch_parameters(), lr=1e-3)
    weights = _snapshot(supernet.weights())
    normal, reduce = _snapshot([supernet.alphas_normal, supernet.alphas_reduce])
    loss = float(arch_step(supernet, optimizer, _batch(seed=1), _batch(seed=2), order=order, xi=0.01))
    assert np.isfinite(loss) and loss > 0
    assert torch.equal(supernet.alphas_normal.grad, torch.zeros_like(normal)), "no cell reads them"
    assert torch.equal(supernet.alphas_normal, normal), "a zero gradient moves no Adam parameter"
    assert (supernet.alphas_reduce != reduce).float().mean() > 0.5, "the reduction alphas move"
    assert _identical(weights, supernet.weights()), "every weight bit-identical"


# -- the architecture step ---------------------------------------------------------------------


@pytest.mark.parametrize("order", [1, 2])
def test_an_architecture_step_moves_the_alphas_and_no_weight(order: int) -> None:
    supernet = _supernet()
    optimizer = torch.optim.Adam(supernet.arch_parameters(), lr=3e-3, betas=(0.5, 0.999), weight_decay=1e-3)
    weights, alphas = _snapshot(supernet.weights()), _snapshot(supernet.arch_parameters())
    loss = float(arch_step(supernet, optimizer, _batch(seed=1), _batch(seed=2), order=order, xi=0.025))
    assert np.isfinite(loss) and loss > 0
    assert _identical(weights, supernet.weights()), "every weight bit-identical"
    assert all(p.grad is None for p in supernet.weights()), "the weights get no gradient"
    for before, after in zip(alphas, supernet.arch_parameters(), strict=True):
        assert not torch.equal(before, after)
        assert (before != after).float().mean() > 0.5, "most alphas move"


def test_the_first_order_loss_is_the_validation_batchs() -> None:
    supernet = _supernet()
    optimizer = torch.optim.SGD(supernet.arch_parameters(), lr=0.0)
    val_batch = _batch(seed=2)
    with torch.no_grad():
        expected = float(loss_at(supernet, val_batch))
    loss = arch_step(supernet, optimizer, _batch(seed=1), val_batch, order=1, xi=0.025)
    assert float(loss) == pytest.approx(expected)


def test_a_weight_step_moves_the_weights_and_no_alpha() -> None:
    supernet = _supernet()
    optimizer = torch.optim.SGD(supernet.weights(), lr=0.1, momentum=0.9)
    weights, alphas = _snapshot(supernet.weights()), _snapshot(supernet.arch_parameters())
    optimizer.zero_grad()
    loss_at(supernet, _batch(seed=1)).backward()
    optimizer.step()
    assert _identical(alphas, supernet.arch_parameters()), "every alpha bit-identical"
    changed = [not torch.equal(a, b) for a, b in zip(weights, supernet.weights(), strict=True)]
    assert sum(changed) > 0.9 * len(changed), "(nearly) every weight moves"


def test_the_order_is_one_or_two() -> None:
    supernet = _supernet()
    with pytest.raises(AssertionError, match="order must be 1 or 2, got 3"):
        arch_gradients(supernet, _batch(), _batch(), order=3, xi=0.01)


def test_the_finite_difference_step_is_the_papers() -> None:
    assert architect._FINITE_DIFFERENCE_R == 0.01  # eps = 0.01 / ||v||, eq. 8


def _double_supernet(mode: str) -> Supernet:
    supernet = _supernet().double()
    with torch.no_grad():
        for alpha in supernet.arch_parameters():
            alpha.normal_()  # away from uniform, so that the alphas' gradients differ
    return supernet.train() if mode == "train" else supernet.eval()


def _exact_hvp(supernet: Supernet, vector: list[torch.Tensor], batch) -> list[torch.Tensor]:
    """grad_a (grad_w L . v) by double backward."""
    weights = list(supernet.weights())
    gradients = torch.autograd.grad(loss_at(supernet, batch), weights, create_graph=True)
    dot = sum((g * v).sum() for g, v in zip(gradients, vector, strict=True))
    return list(torch.autograd.grad(dot, supernet.arch_parameters()))


def _assert_close_overall(got: list[torch.Tensor], expected: list[torch.Tensor], rtol: float) -> None:
    for a, b in zip(got, expected, strict=True):
        assert a.shape == b.shape
        assert float((a - b).norm()) <= rtol * float(b.norm()), float((a - b).norm() / b.norm())


# Both BatchNorm modes make the central difference valid: each is a deterministic function of
# (w, a) (eval: a fixed affine map from the running statistics; train, as the search runs it: the
# batch's statistics, recomputed at w +- eps v, on copies of the buffers) and the supernet has no
# dropout. What does not hold on a supernet this small is the paper's step r = 0.01: the loss is
# only piecewise smooth (ReLU, max pooling; in train mode also BatchNorm over a few values per
# channel), and a step of norm 0.01 crosses kinks, giving relative errors of 0.06 to 10 against the
# exact value in float64 (1e-9 at r = 1e-5). So the formula is checked at r = 1e-6.
SMALL_R = 1e-6


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_the_hessian_vector_product_is_the_exact_double_backward(mode: str, monkeypatch) -> None:
    monkeypatch.setattr(architect, "_FINITE_DIFFERENCE_R", SMALL_R)
    supernet = _double_supernet(mode)
    batch = _batch(n=8, seed=1, dtype=torch.float64)
    generator = torch.Generator().manual_seed(3)
    vector = [torch.randn(p.shape, generator=generator, dtype=torch.float64) for p in supernet.weights()]
    weights, alphas = _snapshot(supernet.weights()), _snapshot(supernet.arch_parameters())
    got = hessian_vector_product(supernet, vector, batch)
    assert _identical(weights, supernet.weights()) and _identical(alphas, supernet.arch_parameters())
    _assert_close_overall(got, _exact_hvp(supernet, vector, batch), rtol=1e-3)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_the_exact_hessian_vector_product_is_the_double_backward_at_the_papers_step_too(mode: str) -> None:
    # The finite difference needs r = 1e-6 to come within 1e-3; hvp="exact" needs no step.
    supernet = _double_supernet(mode)
    batch = _batch(n=8, seed=1, dtype=torch.float64)
    generator = torch.Generator().manual_seed(3)
    vector = [torch.randn(p.shape, generator=generator, dtype=torch.float64) for p in supernet.weights()]
    weights, alphas = _snapshot(supernet.weights()), _snapshot(supernet.arch_parameters())
    buffers = _snapshot(supernet.buffers())
    got = hessian_vector_product(supernet, vector, batch, "exact")
    assert _identical(weights, supernet.weights()) and _identical(alphas, supernet.arch_parameters())
    assert _identical(buffers, supernet.buffers()), "no BatchNorm statistic moves"
    # The reference runs at the model's own weights, in train mode updating the statistics: after ours.
    _assert_close_overall(got, _exact_hvp(supernet, vector, batch), rtol=1e-10)
    paper = hessian_vector_product(supernet, vector, batch)  # r = 0.01
    assert any(float((a - b).norm()) > 1e-3 * float(b.norm()) for a, b in zip(paper, got, strict=True)), (
        "at the paper's step the difference is visibly off the exact product")


def test_the_hessian_vector_product_is_linear_in_the_vector() -> None:
    """eps = r / ||v||: scaling v scales eps inversely, so the perturbed weights are the same and
    the product scales exactly (up to rounding), at the paper's r."""
    supernet = _double_supernet("train")
    batch = _batch(n=8, seed=1, dtype=torch.float64)
    generator = torch.Generator().manual_seed(3)
    vector = [torch.randn(p.shape, generator=generator, dtype=torch.float64) for p in supernet.weights()]
    once = hessian_vector_product(supernet, vector, batch)
    scaled = hessian_vector_product(supernet, [10.0 * v for v in vector], batch)
    _assert_close_overall(scaled, [10.0 * h for h in once], rtol=1e-9)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_the_second_order_gradient_is_that_of_the_unrolled_validation_loss(mode: str, monkeypatch) -> None:
    """Eq. 7-8: d/da L_val(w - xi grad_w L_train(w, a), a), here by autograd through the unrolled step."""
    monkeypatch.setattr(architect, "_FINITE_DIFFERENCE_R", SMALL_R)
    supernet = _double_supernet(mode)
    train_batch, val_batch = (
        _batch(n=8, seed=1, dtype=torch.float64),
        _batch(n=8, seed=2, dtype=torch.float64),
    )
    xi = 0.05
    got, loss = arch_gradients(supernet, train_batch, val_batch, order=2, xi=xi)
    named = {
        name: p for name, p in supernet.named_parameters() if name not in ("alphas_normal", "alphas_reduce")
    }
    gradients = torch.autograd.grad(loss_at(supernet, train_batch), list(named.values()), create_graph=True)
    unrolled = {name: w - xi * g for (name, w), g in zip(named.items(), gradients, strict=True)}
    buffers = {name: b.clone() for name, b in supernet.named_buffers()}
    val_loss = F.cross_entropy(
        functional_call(supernet, {**unrolled, **buffers}, (val_batch[0],)), val_batch[1]
    )
    assert float(loss) == pytest.approx(float(val_loss.detach()), rel=1e-9)
    expected = list(torch.autograd.grad(val_loss, supernet.arch_parameters()))
    _assert_close_overall(got, expected, rtol=1e-3)
    exact, _ = arch_gradients(supernet, train_batch, val_batch, order=2, xi=xi, hvp="exact")
    _assert_close_overall(exact, expected, rtol=1e-9)


def test_second_order_differs_from_first_order() -> None:
    supernet = _double_supernet("train")
    train_batch, val_batch = (
        _batch(n=8, seed=1, dtype=torch.float64),
        _batch(n=8, seed=2, dtype=torch.float64),
    )
    first, _ = arch_gradients(supernet, train_batch, val_batch, order=1, xi=0.05)
    second, _ = arch_gradients(supernet, train_batch, val_batch, order=2, xi=0.05)
    assert not all(torch.allclose(a, b) for a, b in zip(first, second, strict=True))


def test_loss_at_with_a_weights_dict_leaves_the_batchnorm_statistics_alone() -> None:
    supernet = _supernet().train()
    batch = _batch(seed=1)
    buffers = _snapshot(supernet.buffers())
    named = {name: p for name, p in supernet.named_parameters() if "alphas" not in name}
    own = loss_at(supernet, batch, named)
    assert _identical(buffers, supernet.buffers()), "running statistics untouched"
    moved = loss_at(supernet, batch, {name: 1.01 * p.detach() for name, p in named.items()})
    assert _identical(buffers, supernet.buffers())
    assert float(moved.detach()) != float(own.detach())
    plain = float(loss_at(supernet, batch).detach())
    assert float(own.detach()) == pytest.approx(plain, rel=1e-6), "its own weights: its loss"
    assert not _identical(buffers, supernet.buffers()), (
        "a plain train-mode pass updates them (the check bites)"
    )


# -- the discrete network ----------------------------------------------------------------------


def _pool_batchnorm_parameters(network: DartsNetwork) -> int:
    return sum(
        p.numel()
        for cell in network.cells
        for op in cell.ops
        if isinstance(op, nn.Sequential) and isinstance(op[0], (nn.MaxPool2d, nn.AvgPool2d))
        for p in op[1].parameters()
    )


def test_darts_v2_at_the_papers_cifar_width_has_the_repositorys_size_plus_the_pools_batchnorm() -> None:
    config = NetworkConfig(channels=36, layers=20, image_size=32, in_channels=3, n_classes=10)
    network = DartsNetwork(config, DARTS_V2)
    n_params = sum(p.numel() for p in network.parameters())
    assert network.auxiliary_head is None
    # The DARTS repository's count (3.349342 M, auxiliary head excluded) and the BatchNorm after each
    # of the 5 pools of the two reduction cells (72 and 144 channels, a scale and a shift each).
    assert _pool_batchnorm_parameters(network) == 5 * 2 * 72 + 5 * 2 * 144 == 2_160
    assert n_params == 3_349_342 + 2_160 == 3_351_502
    with_head = DartsNetwork(NetworkConfig(**{**config.__dict__, "auxiliary": True}), DARTS_V2)
    assert sum(p.numel() for name, p in with_head.named_parameters() if "auxiliary" not in name) == n_params


@pytest.mark.parametrize(
    "genotype",
    [
        DARTS_V1,
        DARTS_V2,
        random_genotype(np.random.default_rng(0)),
        random_genotype(np.random.default_rng(1), steps=2),
    ],
    ids=["darts-v1", "darts-v2", "random", "random-2-steps"],
)
@pytest.mark.parametrize(("side", "in_channels"), [(8, 1), (7, 3)])
def test_a_small_network_maps_images_to_logits(genotype: Genotype, side: int, in_channels: int) -> None:
    torch.manual_seed(0)
    network = DartsNetwork(
        NetworkConfig(channels=4, layers=5, image_size=side, in_channels=in_channels, n_classes=10), genotype
    )
    images, _ = _batch(n=3, side=side, channels=in_channels)
    assert network(images).shape == (3, 10)
    network.eval()
    with torch.no_grad():
        assert network(images).shape == (3, 10)
    assert [cell.reduction for cell in network.cells] == [False, True, False, True, False]


def test_the_cells_follow_the_genotype() -> None:
    network = DartsNetwork(NetworkConfig(channels=4, layers=5, image_size=8), DARTS_V2)
    normal, reduce = network.cells[0], network.cells[1]
    assert isinstance(normal, NetworkCell) and normal.inputs == [s for _, s in DARTS_V2.normal]
    assert reduce.inputs == [s for _, s in DARTS_V2.reduce]
    assert isinstance(reduce.ops[2], nn.Identity), "skip_connect from a node: stride 1"
    assert not isinstance(reduce.ops[0][0], nn.Identity) and reduce.ops[0][0].stride == 2


def test_the_auxiliary_head_answers_in_training_only() -> None:
    torch.manual_seed(0)
    network = DartsNetwork(NetworkConfig(channels=4, layers=5, image_size=8, auxiliary=True), DARTS_V2)
    assert network.auxiliary_after == 3 and network.auxiliary_head is not None
    images, _ = _batch(n=3)
    output = network.train()(images)
    assert isinstance(output, tuple) and len(output) == 2
    logits, auxiliary = output
    assert logits.shape == auxiliary.shape == (3, 10)
    network.eval()
    with torch.no_grad():
        logits = network(images)
    assert isinstance(logits, torch.Tensor) and logits.shape == (3, 10)


def test_the_auxiliary_head_leaves_the_main_logits_alone_in_training() -> None:
    torch.manual_seed(0)
    network = DartsNetwork(NetworkConfig(channels=4, layers=5, image_size=8, auxiliary=True), DARTS_V2)
    images, _ = _batch(n=4)
    logits, _ = network.train()(images)
    network.auxiliary_after = None  # the same weights, the head not run
    torch.testing.assert_close(network(images), logits)


def test_the_auxiliary_head_leaves_the_main_logits_alone_when_it_follows_the_last_cell() -> None:
    torch.manual_seed(0)
    network = DartsNetwork(NetworkConfig(channels=4, layers=3, image_size=8, auxiliary=True), DARTS_V2)
    assert network.auxiliary_after == 2 == len(network.cells) - 1
    images, _ = _batch(n=4)
    logits, _ = network.train()(images)
    network.auxiliary_after = None
    torch.testing.assert_close(network(images), logits)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"channels": 5}, "channels: 5 is not allowed; it must be even"),
        ({"drop_path": 1.0}, r"drop_path: 1.0 is not allowed; it must satisfy 0 <= drop_path < 1"),
        ({"auxiliary": 1}, "auxiliary: 1 is not allowed; it must be true or false"),
        ({"layers": -1}, "layers: -1 is not allowed"),
    ],
)
def test_a_bad_network_config_is_refused_in_one_line(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        NetworkConfig(**change)


# -- drop-path ---------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_drop_path_zeroes_whole_samples_and_keeps_the_expectation(p: float) -> None:
    torch.manual_seed(0)
    x = torch.rand(20_000, 2, 3, 3) + 0.5
    dropped = drop_path(x, p)
    flat, kept_scale = dropped.flatten(1), (dropped / x).flatten(1)
    zeroed = (flat == 0).all(dim=1)
    assert ((flat != 0).all(dim=1) | zeroed).all(), "a sample is dropped whole or kept whole"
    torch.testing.assert_close(kept_scale[~zeroed], torch.full_like(kept_scale[~zeroed], 1 / (1 - p)))
    assert float(zeroed.float().mean()) == pytest.approx(p, abs=0.015)
    torch.testing.assert_close(dropped.mean(dim=0), x.mean(dim=0), rtol=0.03, atol=0)


def test_drop_path_acts_in_training_only() -> None:
    torch.manual_seed(0)
    network = DartsNetwork(NetworkConfig(channels=4, layers=3, image_size=8), DARTS_V2)
    network.drop_prob = 0.5
    images, _ = _batch(n=4)
    network.eval()
    with torch.no_grad():
        assert torch.equal(network(images), network(images)), "eval: deterministic"
        network.train()
        assert not torch.equal(network(images), network(images)), "train: samples' paths are dropped"


# -- pictures ----------------------------------------------------------------------------------


def test_edge_names_label_each_edge_in_order() -> None:
    names = edge_names(4)
    assert len(names) == 14
    assert names[:3] == ["node 0 <- c_{k-2}", "node 0 <- c_{k-1}", "node 1 <- c_{k-2}"]
    assert names[-1] == "node 3 <- node 2"


@pytest.mark.parametrize(
    "genotype",
    [DARTS_V2, random_genotype(np.random.default_rng(0), steps=2)],
    ids=["darts-v2", "random-2-steps"],
)
def test_cells_png_writes_a_png(genotype: Genotype, tmp_path) -> None:
    path = tmp_path / "deep" / "cells.png"
    needs_graphviz()
    assert cells_png(genotype, path, title="a genotype")
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_cells_png_without_graphviz_draws_nothing_and_says_so(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot on it
    path = tmp_path / "cells.png"
    assert not cells_png(DARTS_V2, path, title="a genotype")
    assert not path.exists()


def test_alphas_heatmap_png_writes_a_png(tmp_path) -> None:
    normal, reduce = _supernet().arch_weights()
    path = tmp_path / "alphas" / "epoch-0001.png"
    alphas_heatmap_png(normal, reduce, path, title="softmax(alpha), epoch 1")
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000
