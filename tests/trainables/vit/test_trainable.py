"""The ViT family's checks before a search: settings, data, and the model built at the space's points."""

from __future__ import annotations

import dataclasses

import pytest

from tuneforge.errors import ConfigError
from tuneforge.search_spaces import CategoricalParam, load_space
from tuneforge.trainables import get_trainable
from tuneforge.trainables.torch.loop import TrainSettings, split_config
from tuneforge.trainables.vit import VIT


def _space(**config):
    space = load_space("vit-digits")
    return dataclasses.replace(space, config={**space.config, **config})


def test_prepare_fills_the_image_shape_and_classes_from_the_data() -> None:
    config = get_trainable("vit").prepare(load_space("vit-digits"))
    assert (config["image_size"], config["channels"], config["n_classes"]) == (8, 1, 10)
    settings, model = split_config(VIT, {**config, "lr": 1e-3, "patch_size": 4, "heads": 2})
    # warmup_epochs 0.5: the ViT's own default (TrainSettings' is 1.0)
    assert settings == TrainSettings(epochs=15, batch_size=64, lr=1e-3, warmup_epochs=0.5)
    assert (model.width, model.depth, model.patch_size, model.n_tokens) == (32, 2, 4, 5)


def test_every_bundled_vit_space_prepares() -> None:
    for name in ("vit-mnist", "vit-fashion-mnist", "vit-digits"):
        assert get_trainable("vit").prepare(load_space(name))["n_classes"] == 10


BAD = {
    "unknown setting": (_space(colour="red"), "'colour' is not a setting of trainable 'vit'; valid: "),
    "derived setting": (_space(image_size=28), "'image_size' is not a setting"),
    "no dataset": (dataclasses.replace(load_space("vit-digits"), config={"epochs": 2}),
                   "config.dataset: missing"),
    "zero epochs": (_space(epochs=0), "epochs: expected a positive integer, got 0"),
    "negative shift": (_space(max_shift=-1), "max_shift: -1 is not allowed; it must be an integer >= 0"),
    "flip not a bool": (_space(flip="yes"), "flip: 'yes' is not allowed; it must be true or false"),
    "width not divisible by a searched heads choice": (_space(width=30),
                                                       "width: 30 is not divisible by heads"),
    "patch choice that does not divide": (
        dataclasses.replace(load_space("vit-digits"), params=(CategoricalParam("patch_size", (2, 3)),)),
        "patch_size: 3 does not divide image_size 8"),
}


@pytest.mark.parametrize(("space", "message"), BAD.values(), ids=BAD.keys())
def test_prepare_refuses_bad_settings_with_one_line(space, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        get_trainable("vit").prepare(space)
    assert "\n" not in str(caught.value)


def test_random_shift_moves_each_image_by_its_own_offset_within_max_shift() -> None:
    import numpy as np
    import torch

    from tuneforge.trainables.torch.classification import random_shift

    images = torch.rand(64, 1, 8, 8) + 1  # no zeros: a zero in the output is uncovered border
    shifted = random_shift(images, 2, np.random.default_rng(0))
    assert shifted.shape == images.shape
    offsets = set()
    for before, after in zip(images, shifted, strict=True):
        [found] = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if torch.equal(_moved(before, dy, dx), after)]
        offsets.add(found)
    assert len(offsets) > 10, "offsets are drawn per image"
    again = random_shift(images, 2, np.random.default_rng(0))
    assert torch.equal(shifted, again), "the same draws for the same seed (a resumed trial)"
    assert random_shift(images, 0, np.random.default_rng(0)) is images


def _moved(image, dy: int, dx: int):
    """``image`` (C, H, W) shown at ``(dy, dx)`` pixels from where it was, zeros where it left."""
    import torch

    out = torch.zeros_like(image)
    height, width = image.shape[1:]
    out[:, max(0, -dy):height - max(0, dy), max(0, -dx):width - max(0, dx)] = \
        image[:, max(0, dy):height + min(0, dy), max(0, dx):width + min(0, dx)]
    return out


def test_max_shift_is_a_setting_with_default_zero() -> None:
    assert VIT.default_config()["max_shift"] == 0
    assert "max_shift" in VIT.config_keys()


def test_random_flip_mirrors_about_half_the_images_and_keeps_the_others() -> None:
    import numpy as np
    import torch

    from tuneforge.trainables.torch.classification import random_flip

    images = torch.rand(200, 1, 8, 8)
    flipped = random_flip(images, np.random.default_rng(0))
    mirrored = [torch.equal(after, before.flip(-1)) for before, after in zip(images, flipped, strict=True)]
    kept = [torch.equal(after, before) for before, after in zip(images, flipped, strict=True)]
    assert all(m != k for m, k in zip(mirrored, kept, strict=True)), "each image is one or the other"
    assert 70 < sum(mirrored) < 130
    assert torch.equal(flipped, random_flip(images, np.random.default_rng(0))), "the same for a seed"
    assert VIT.default_config()["flip"] is False and "flip" in VIT.config_keys()
