from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from tuneforge.errors import ConfigError
from tuneforge.trainables.vit.model import VisionTransformer, ViTConfig


def _model(**changes) -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(ViTConfig(**changes))


@pytest.mark.parametrize(("image_size", "patch_size"), [(28, 4), (28, 7), (8, 2), (8, 4)])
def test_logits_have_one_row_per_image_and_one_column_per_class(image_size, patch_size) -> None:
    model = _model(image_size=image_size, patch_size=patch_size, n_classes=5)
    logits = model(torch.randn(3, 1, image_size, image_size))
    assert logits.shape == (3, 5)
    assert torch.isfinite(logits).all()


def test_token_count_is_patches_plus_the_class_token() -> None:
    config = ViTConfig(image_size=28, patch_size=7)
    assert (config.n_patches, config.n_tokens) == (16, 17)
    assert VisionTransformer(config).position_embedding.shape == (1, 17, 64)


@pytest.mark.parametrize(("image_size", "patch_size", "divisors"), [
    (28, 5, "1, 2, 4, 7, 14, 28"),
    (8, 3, "1, 2, 4, 8"),
    (28, 29, "1, 2, 4, 7, 14, 28"),
])
def test_a_patch_size_that_does_not_divide_the_image_is_refused(image_size, patch_size, divisors) -> None:
    message = f"patch_size: {patch_size} does not divide image_size {image_size}; choose one of {divisors}"
    with pytest.raises(ConfigError) as error:
        ViTConfig(image_size=image_size, patch_size=patch_size)
    assert str(error.value) == message


def test_a_width_not_divisible_by_heads_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^width: 66 is not divisible by heads 4; choose a multiple of 4$"):
        ViTConfig(width=66, heads=4)


@pytest.mark.parametrize(("field", "value", "rule"), [
    ("depth", 0, "positive integer"),
    ("heads", -2, "positive integer"),
    ("width", 64.0, "positive integer"),
    ("channels", True, "positive integer"),
    ("dropout", 1.0, "0 <= dropout < 1"),
    ("dropout", -0.1, "0 <= dropout < 1"),
    ("mlp_ratio", 0.0, "> 0"),
    ("mlp_ratio", True, "> 0"),  # a bool is not a rate, though True > 0
    ("dropout", False, "0 <= dropout < 1"),
])
def test_bad_values_are_refused_naming_the_field_value_and_rule(field, value, rule) -> None:
    with pytest.raises(ConfigError) as error:
        ViTConfig(**{field: value})
    message = str(error.value)
    assert message.startswith(f"{field}: {value!r}") and rule in message and "\n" not in message


def test_the_config_is_frozen() -> None:
    config = ViTConfig()
    with pytest.raises(AttributeError):
        config.width = 128  # type: ignore[misc]


@pytest.mark.parametrize("shape", [(3, 1, 32, 32), (3, 3, 28, 28), (1, 28, 28)])
def test_an_image_of_the_wrong_shape_is_a_value_error(shape) -> None:
    with pytest.raises(ValueError, match=r"^images: expected shape \(N, 1, 28, 28\), got \(" + ", ".join(
            map(str, shape)) + r"\);"):
        _model()(torch.randn(*shape))


def test_eval_mode_is_deterministic_and_train_mode_applies_dropout() -> None:
    model = _model(image_size=8, patch_size=2, dropout=0.3)
    images = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        model.eval()
        assert torch.equal(model(images), model(images))
        model.train()
        assert not torch.equal(model(images), model(images))


def test_the_model_initialises_itself() -> None:
    model = _model()
    assert torch.all(model.head.bias == 0) and torch.all(model.final_norm.weight == 1)
    assert 0.01 < model.blocks[0].attention.qkv.weight.std().item() < 0.03
    assert 0.01 < model.position_embedding.std().item() < 0.03
    for parameter in (model.class_token, model.position_embedding, model.head.weight):
        assert parameter.abs().max().item() <= 2 * 0.02 + 1e-6  # truncated at two std


def test_gradients_reach_the_class_token_and_position_embeddings() -> None:
    model = _model(image_size=8, patch_size=4)
    F.cross_entropy(model(torch.randn(3, 1, 8, 8)), torch.tensor([0, 1, 2])).backward()
    assert model.class_token.grad is not None and model.class_token.grad.abs().sum() > 0
    assert model.position_embedding.grad is not None and model.position_embedding.grad.abs().sum() > 0


def test_the_model_can_overfit_a_tiny_batch() -> None:
    model = _model(image_size=8, patch_size=2, width=32, depth=2, heads=4, dropout=0.0)
    images, labels = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        optimizer.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(images).argmax(dim=1) == labels).float().mean().item()
    assert accuracy == 1.0
