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
