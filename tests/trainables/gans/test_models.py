"""The GAN networks and losses (DCGAN, conditional GAN, WGAN-GP), without training: output shapes
at 28, 32 and 64 px (grey and colour) with generator images in [-1, 1]; ``stages`` and the refusal
of bad sizes and widths; the discriminator emits logits and the losses are BCE-with-logits (and the
non-saturating generator loss) computed by hand; the gradient penalty against a direct autograd
computation (seeded interpolation, loss scale, differentiability); the critic's per-sample
normalisation; the conditional networks' use of the label; and DCGAN's N(0, 0.02) initialisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from tuneforge.errors import ConfigError
from tuneforge.trainables.gans.cgan import CGANConfig, ConditionalDiscriminator, ConditionalGenerator
from tuneforge.trainables.gans.dcgan import (
    DCGANConfig,
    Discriminator,
    Generator,
    dcgan_init,
    discriminator_loss,
    generator_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    stages,
)
from tuneforge.trainables.gans.wgan_gp import Critic, WGANGPConfig, critic_loss, gradient_penalty
from tuneforge.trainables.gans.wgan_gp import generator_loss as wgan_generator_loss

N = 3
"""Batch size: small, and more than one so that BatchNorm has batch statistics."""
SIZES_AND_CHANNELS = [(size, channels) for size in (28, 32, 64) for channels in (1, 3)]
TINY = {"g_width": 8, "d_width": 8, "latent_dim": 16}


def _dcgan(image_size: int = 28, channels: int = 1) -> DCGANConfig:
    return DCGANConfig(image_size=image_size, channels=channels, **TINY)


def _cgan(image_size: int = 28, channels: int = 1) -> CGANConfig:
    return CGANConfig(image_size=image_size, channels=channels, n_classes=10, label_dim=4, **TINY)


def _wgan(image_size: int = 28, channels: int = 1) -> WGANGPConfig:
    return WGANGPConfig(image_size=image_size, channels=channels, **TINY)


def _images(image_size: int, channels: int, n: int = N, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, image_size, image_size, generator=generator) * 2 - 1


def _labels(n: int = N) -> torch.Tensor:
    return torch.arange(n) % 10


# -- shapes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("image_size", "channels"), SIZES_AND_CHANNELS)
def test_generator_makes_images_of_the_configured_shape_in_minus_one_to_one(image_size, channels) -> None:
    torch.manual_seed(0)
    config = _dcgan(image_size, channels)
    generator = Generator(config)
    images = generator(torch.randn(N, config.latent_dim))
    assert images.shape == (N, channels, image_size, image_size)
    assert images.min() >= -1 and images.max() <= 1
    with torch.no_grad():
        generator.body.layers[-2].weight.mul_(1000)  # the last convolution: drive its output far out
        images = generator(torch.randn(N, config.latent_dim))
    assert images.min() >= -1 and images.max() <= 1
    assert images.abs().max() > 0.99, "pushed far out, images reach the ends of the range, no further"


@pytest.mark.parametrize(("image_size", "channels"), SIZES_AND_CHANNELS)
def test_conditional_generator_makes_images_of_the_configured_shape(image_size, channels) -> None:
    torch.manual_seed(0)
    config = _cgan(image_size, channels)
    images = ConditionalGenerator(config)(torch.randn(N, config.latent_dim), _labels())
    assert images.shape == (N, channels, image_size, image_size)
    assert images.min() >= -1 and images.max() <= 1


@pytest.mark.parametrize(("image_size", "channels"), SIZES_AND_CHANNELS)
@pytest.mark.parametrize("network", [Discriminator, Critic])
def test_discriminator_and_critic_give_one_score_per_image(network, image_size, channels) -> None:
    torch.manual_seed(0)
    scores = network(_wgan(image_size, channels))(_images(image_size, channels))
    assert scores.shape == (N,)
    assert torch.isfinite(scores).all()


@pytest.mark.parametrize(("image_size", "channels"), SIZES_AND_CHANNELS)
def test_conditional_discriminator_gives_one_logit_per_image(image_size, channels) -> None:
    torch.manual_seed(0)
    logits = ConditionalDiscriminator(_cgan(image_size, channels))(_images(image_size, channels), _labels())
    assert logits.shape == (N,)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("image_size", [16, 28, 32])
def test_critic_scores_images_of_16_28_and_32_px(image_size) -> None:
    torch.manual_seed(0)
    assert Critic(_wgan(image_size))(_images(image_size, 1)).shape == (N,)


# -- sizes and widths --------------------------------------------------------------------------------


@pytest.mark.parametrize(("image_size", "expected"), [(28, (7, 2)), (32, (4, 3)), (64, (4, 4)), (16, (4, 2)),
                                                      (8, (4, 1)), (12, (6, 1))])
def test_stages_halve_the_side_while_even_and_at_least_four(image_size, expected) -> None:
    assert stages(image_size) == expected


@pytest.mark.parametrize("image_size", [7, 27, 6, 4, 2])
def test_an_odd_or_too_small_side_is_refused(image_size) -> None:
    message = rf"^image_size: {image_size} is not allowed; a GAN needs an even side of at least 8"
    with pytest.raises(ConfigError, match=message):
        stages(image_size)


@pytest.mark.parametrize("config", [DCGANConfig, CGANConfig, WGANGPConfig])
@pytest.mark.parametrize("image_size", [7, 27, 6])
def test_configs_refuse_an_image_size_no_gan_can_make(config, image_size) -> None:
    with pytest.raises(ConfigError, match=r"^image_size: "):
        config(image_size=image_size)


@pytest.mark.parametrize("config", [DCGANConfig, CGANConfig, WGANGPConfig])
@pytest.mark.parametrize("field", ["g_width", "d_width", "latent_dim", "channels"])
@pytest.mark.parametrize("value", [0, -8, 8.0, True])
def test_configs_refuse_a_width_that_is_not_a_positive_integer(config, field, value) -> None:
    with pytest.raises(ConfigError) as error:
        config(**{field: value})
    assert str(error.value) == f"{field}: {value!r} is not allowed; it must be a positive integer"


@pytest.mark.parametrize("field", ["n_classes", "label_dim"])
def test_the_conditional_config_refuses_no_classes_or_an_empty_label_embedding(field) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}: 0 is not allowed"):
        CGANConfig(**{field: 0})


# -- logits and losses -------------------------------------------------------------------------------


def _discriminators() -> list[tuple[nn.Module, tuple[torch.Tensor, ...]]]:
    """Each discriminator-like network with the inputs it takes, at 16 px."""
    images = _images(16, 1)
    return [(Discriminator(_dcgan(16)), (images,)), (Critic(_wgan(16)), (images,)),
            (ConditionalDiscriminator(_cgan(16)), (images, _labels()))]


@pytest.mark.parametrize("bias", [50.0, -50.0])
def test_discriminators_output_unbounded_logits_not_probabilities(bias) -> None:
    torch.manual_seed(0)
    for network, inputs in _discriminators():
        with torch.no_grad():
            network.head.bias.fill_(bias)
            scores = network(*inputs)
        if bias > 0:
            assert (scores > 1).all(), f"{type(network).__name__} squashes its output"
        else:
            assert (scores < 0).all(), f"{type(network).__name__} squashes its output"


def test_discriminator_loss_is_binary_cross_entropy_of_logits_real_as_one_fake_as_zero() -> None:
    real = torch.tensor([2.0, -1.0, 0.5, 30.0])
    fake = torch.tensor([-3.0, 0.0, 1.5])
    by_hand = -torch.log(torch.sigmoid(real)).mean() - torch.log(1 - torch.sigmoid(fake)).mean()
    torch.testing.assert_close(discriminator_loss(real, fake), by_hand)


def test_discriminator_loss_does_not_saturate_when_confidently_wrong() -> None:
    # -log sigmoid(-200) = 200 for each; Sigmoid + BCELoss would clamp each log at -100.
    loss = discriminator_loss(torch.tensor([-200.0]), torch.tensor([200.0]))
    torch.testing.assert_close(loss, torch.tensor(400.0))


def test_generator_loss_is_the_non_saturating_minus_log_sigmoid_of_the_logit() -> None:
    fake = torch.tensor([-40.0, -2.0, 0.0, 3.0], requires_grad=True)
    loss = generator_loss(fake)
    by_hand = torch.log1p(torch.exp(-fake.detach().double())).mean()  # -log sigmoid(l) = log(1 + e^-l)
    torch.testing.assert_close(loss.double(), by_hand)
    torch.testing.assert_close(loss, -F.logsigmoid(fake).mean())
    loss.backward()
    # d/dl -log sigmoid(l) = sigmoid(l) - 1: about -1 for a confidently rejected sample, not 0.
    torch.testing.assert_close(fake.grad[0] * len(fake), torch.tensor(-1.0))


def test_the_hinge_losses_stop_at_the_margin() -> None:
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-3.0, 0.0, 1.5])
    # relu(1 - real): 0, 0.5, 2 -> mean 0.8333; relu(1 + fake): 0, 1, 2.5 -> mean 1.1667
    torch.testing.assert_close(hinge_discriminator_loss(real, fake), torch.tensor(0.5 / 3 + 2 / 3 + 3.5 / 3))
    torch.testing.assert_close(hinge_generator_loss(fake), torch.tensor(0.5))
    beyond = torch.tensor([5.0], requires_grad=True)  # a real image past the margin: no push
    hinge_discriminator_loss(beyond, torch.tensor([-5.0])).backward()
    assert float(beyond.grad) == 0.0


@pytest.mark.parametrize("conditional", [False, True])
def test_a_spectrally_normalised_discriminator_has_no_batchnorm_and_unit_spectral_norms(conditional) -> None:
    torch.manual_seed(0)
    config = (CGANConfig(image_size=28, n_classes=10, label_dim=4, spectral_norm=True, **TINY) if conditional
              else DCGANConfig(image_size=28, spectral_norm=True, **TINY))
    network = ConditionalDiscriminator(config) if conditional else Discriminator(config)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in network.modules())
    normalised = [m for m in network.modules() if isinstance(m, (nn.Conv2d, nn.Embedding))]
    assert normalised and all(nn.utils.parametrize.is_parametrized(m, "weight") for m in normalised)
    images = _images(28, 1)
    args = (images, _labels()) if conditional else (images,)
    network.train()
    for _ in range(30):  # power iterations run in training passes
        network(*args)
    for module in normalised:
        if isinstance(module, nn.Conv2d):
            sigma = torch.linalg.matrix_norm(module.weight.detach().flatten(1), ord=2)
            assert float(sigma) == pytest.approx(1.0, abs=0.05), type(module).__name__
    assert network(*args).shape == (N,)


def test_wasserstein_losses_are_mean_score_differences() -> None:
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 0.0, 4.0])
    loss, wasserstein = critic_loss(real, fake, torch.tensor(0.5), gp_weight=10.0)
    torch.testing.assert_close(wasserstein, torch.tensor(2.0 - 1.0))
    torch.testing.assert_close(loss, torch.tensor(-1.0 + 10.0 * 0.5))
    torch.testing.assert_close(wgan_generator_loss(fake), torch.tensor(-1.0))


# -- gradient penalty --------------------------------------------------------------------------------


def _tiny_critic() -> nn.Module:
    """A critic on (N, 1, 4, 4) images small enough to check by hand: (N, 16) -> (N, 5) -> (N,)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 5), nn.Tanh(), nn.Linear(5, 1), nn.Flatten(0))


def _penalty_by_hand(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, seed: int) -> torch.Tensor:
    """The paper's eq. 3, written out: e ~ U(0, 1) per sample, x_hat = e real + (1 - e) fake,
    mean over samples of (||d f(x_hat) / d x_hat||_2 - 1)^2."""
    e = torch.rand(len(real), 1, 1, 1, generator=torch.Generator().manual_seed(seed))
    x_hat = (e * real + (1 - e) * fake).requires_grad_(True)
    norms = torch.stack([torch.autograd.grad(critic(x_hat)[i], x_hat)[0][i].flatten().norm()
                         for i in range(len(real))])  # one sample's gradient at a time
    return ((norms - 1) ** 2).mean()


@pytest.mark.parametrize("network", ["tiny", "critic"])
def test_gradient_penalty_equals_a_direct_autograd_computation(network) -> None:
    if network == "tiny":
        critic, real, fake = _tiny_critic(), _images(4, 1, n=5, seed=1), _images(4, 1, n=5, seed=2)
    else:
        torch.manual_seed(0)
        critic, real, fake = Critic(_wgan(16)), _images(16, 1, n=4, seed=1), _images(16, 1, n=4, seed=2)
    penalty = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(penalty, _penalty_by_hand(critic, real, fake, seed=7))
    assert penalty > 0


def test_gradient_penalty_of_a_linear_critic_is_its_weight_norm_minus_one_squared() -> None:
    weight = torch.linspace(-1, 1, 16)
    critic = nn.Sequential(nn.Flatten(), nn.Linear(16, 1), nn.Flatten(0))
    with torch.no_grad():
        critic[1].weight.copy_(weight[None])
    penalty = gradient_penalty(critic, _images(4, 1, seed=1), _images(4, 1, seed=2))
    torch.testing.assert_close(penalty, (weight.norm() - 1) ** 2)


@pytest.mark.parametrize("scale", [2.0**16, 1000.0])
def test_gradient_penalty_is_the_same_under_a_loss_scale(scale) -> None:
    critic, real, fake = _tiny_critic(), _images(4, 1, n=5, seed=1), _images(4, 1, n=5, seed=2)
    unscaled = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(3))
    scaled = gradient_penalty(critic, real, fake, scale=scale, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(scaled, unscaled)


def test_gradient_penalty_with_its_own_generator_leaves_the_global_rng_alone() -> None:
    critic, real, fake = _tiny_critic(), _images(4, 1, seed=1), _images(4, 1, seed=2)
    before = torch.get_rng_state()
    first = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), before)
    second = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, second), "the same seed, the same interpolates"


def test_gradient_penalty_trains_the_critic() -> None:
    torch.manual_seed(0)
    critic = Critic(_wgan(16))
    gradient_penalty(critic, _images(16, 1, seed=1), _images(16, 1, seed=2)).backward()
    for name in ("body.layers.0.weight", "head.weight"):
        grad = critic.get_parameter(name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    head_bias = critic.head.bias.grad  # a constant shift cannot change the critic's gradient
    assert head_bias is None or torch.count_nonzero(head_bias) == 0


# -- the critic's normalisation ----------------------------------------------------------------------


@pytest.mark.parametrize("image_size", [16, 28, 32])
def test_critic_normalises_per_sample_with_group_norm_not_batch_norm(image_size) -> None:
    critic = Critic(_wgan(image_size))
    kinds = {type(module) for module in critic.modules()}
    assert nn.GroupNorm in kinds
    assert not any(issubclass(kind, nn.modules.batchnorm._BatchNorm) for kind in kinds)


@pytest.mark.parametrize("image_size", [16, 28, 32])
def test_a_critic_score_does_not_depend_on_the_rest_of_the_batch(image_size) -> None:
    torch.manual_seed(0)
    critic = Critic(_wgan(image_size)).train()
    images = _images(image_size, 1, n=4)
    torch.testing.assert_close(critic(images)[0], critic(images[:1])[0])


def test_the_dcgan_discriminator_in_contrast_couples_the_batch_through_batch_norm() -> None:
    """The check above can fail: BatchNorm's batch statistics make a score depend on its batch."""
    torch.manual_seed(0)
    discriminator = Discriminator(_dcgan(16)).train()
    images = _images(16, 1, n=4)
    with torch.no_grad():
        alone, together = discriminator(images[:2])[0], discriminator(images)[0]
    assert not torch.allclose(alone, together)


# -- conditioning ------------------------------------------------------------------------------------


def test_the_conditional_generator_draws_a_different_image_for_a_different_label() -> None:
    torch.manual_seed(0)
    config = _cgan(16)
    generator = ConditionalGenerator(config).train()
    z = torch.randn(1, config.latent_dim).repeat(4, 1)  # one latent, four times
    with torch.no_grad():
        images = generator(z, torch.tensor([3, 3, 5, 7]))
    torch.testing.assert_close(images[0], images[1])  # same latent, same label: same image
    for other in (2, 3):
        assert (images[0] - images[other]).abs().max() > 1e-3, "the label changes the image"


def test_the_conditional_discriminator_judges_image_and_label_together() -> None:
    torch.manual_seed(0)
    discriminator = ConditionalDiscriminator(_cgan(16)).train()
    with torch.no_grad():
        discriminator.embed.weight.normal_(0.0, 1.0)  # larger than init, so the labels differ clearly
        logits = discriminator(_images(16, 1, n=1).repeat(4, 1, 1, 1), torch.tensor([3, 3, 5, 7]))
    torch.testing.assert_close(logits[0], logits[1])  # same image, same label: same logit
    for other in (2, 3):
        assert (logits[0] - logits[other]).abs() > 1e-3, "the label changes the logit"


# -- initialisation ----------------------------------------------------------------------------------


def test_dcgan_init_draws_weights_from_n_0_002_and_zeroes_biases() -> None:
    torch.manual_seed(0)
    modules = [nn.Conv2d(3, 64, 4), nn.ConvTranspose2d(64, 32, 4), nn.Linear(48, 64), nn.Embedding(100, 32)]
    for module in modules:
        dcgan_init(module)
        weight = module.weight.detach()
        assert abs(weight.std().item() - 0.02) < 0.002, type(module).__name__
        assert abs(weight.mean().item()) < 0.002, type(module).__name__
        if getattr(module, "bias", None) is not None:
            assert torch.count_nonzero(module.bias) == 0, type(module).__name__


@pytest.mark.parametrize("norm", [nn.BatchNorm2d(256), nn.GroupNorm(1, 256)])
def test_dcgan_init_draws_norm_scales_from_n_1_002_and_zeroes_shifts(norm) -> None:
    torch.manual_seed(0)
    dcgan_init(norm)
    assert abs(norm.weight.mean().item() - 1) < 0.005
    assert 0.015 < norm.weight.std().item() < 0.025
    assert torch.count_nonzero(norm.bias) == 0


def _every_network() -> list[nn.Module]:
    return [Generator(_dcgan(32, 3)), Discriminator(_dcgan(32, 3)), Critic(_wgan(32, 3)),
            ConditionalGenerator(_cgan(32, 3)), ConditionalDiscriminator(_cgan(32, 3))]


def test_every_network_is_built_with_dcgan_init() -> None:
    """PyTorch's default init has std 1/sqrt(3 fan_in): 0.08 for the first 3-channel convolution,
    so these bounds tell the two apart."""
    torch.manual_seed(0)
    for network in _every_network():
        for name, module in network.named_modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Embedding)):
                assert 0.012 < module.weight.std().item() < 0.028, f"{type(network).__name__}.{name}"
                bias = getattr(module, "bias", None)
                assert bias is None or torch.count_nonzero(bias) == 0, f"{type(network).__name__}.{name}"
