"""The GAN families as trainables: their checks before a search, and a real ``--smoke`` search of
each on a local Ray into a real MLflow store (runs, per-epoch scores, sample grids, the logged
generator)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from tests.conftest import SmokeSearch, parent_and_children
from tuneforge.errors import ConfigError
from tuneforge.schema import TrialStatus
from tuneforge.search_spaces import CategoricalParam, load_space
from tuneforge.trainables import get_trainable
from tuneforge.trainables.gans import CGAN, DCGAN, WGAN_GP
from tuneforge.trainables.gans.trainable import GANSettings
from tuneforge.trainables.torch.loop import TrainSettings, split_config

SPACES = {"dcgan-mnist": "dcgan", "dcgan-fashion-mnist": "dcgan", "cgan-fashion-mnist": "cgan",
          "wgan-gp-mnist": "wgan-gp"}


def _space(name: str, **config):
    """The bundled space with ``config`` fixed (and no longer searched)."""
    space = load_space(name)
    return dataclasses.replace(space, config={**space.config, **config},
                               params=tuple(p for p in space.params if p.name not in config))


def test_every_bundled_gan_space_prepares_with_the_image_shape_from_its_data() -> None:
    for name, trainable in SPACES.items():
        space = load_space(name)
        assert space.trainable == trainable and (space.metric, space.mode) == ("clf_fid", "min")
        config = get_trainable(trainable).prepare(space)
        assert (config["image_size"], config["channels"]) == (28, 1)
        assert config.get("n_classes") == (10 if trainable == "cgan" else None)


def test_each_gan_has_its_papers_defaults() -> None:
    dcgan_settings, _ = split_config(DCGAN, {"dataset": "mnist"})
    assert dcgan_settings == TrainSettings(lr=2e-4, batch_size=64, weight_decay=0.0, warmup_epochs=0.0,
                                           grad_clip=0.0)
    assert DCGAN.gan_settings({}) == GANSettings(beta1=0.5, beta2=0.999, n_critic=1)
    wgan_settings, _ = split_config(WGAN_GP, {})
    assert wgan_settings.lr == 1e-4  # Gulrajani et al.: Adam(1e-4, betas (0, 0.9)), 5 critic steps
    assert WGAN_GP.gan_settings({}) == GANSettings(beta1=0.0, beta2=0.9, n_critic=5, gp_weight=10.0)
    assert "gp_weight" in WGAN_GP.config_keys() and "gp_weight" not in DCGAN.config_keys()
    assert {"n_classes", "label_dim"} & CGAN.config_keys() == {"label_dim"}  # n_classes comes from the data


BAD = {
    "beta1 of 1": (_space("dcgan-mnist", beta1=1.0), "dcgan",
                   "beta1: 1.0 is not allowed; it must satisfy 0 <= beta1 < 1"),
    "no critic steps": (_space("wgan-gp-mnist", n_critic=0), "wgan-gp",
                        "n_critic: 0 is not allowed; it must be a positive integer"),
    "a searched negative penalty": (
        dataclasses.replace(load_space("wgan-gp-mnist"),
                            params=(CategoricalParam("gp_weight", (10.0, -1.0)),)),
        "wgan-gp", "gp_weight: -1.0 is not allowed; it must be a number >= 0"),
    "a penalty for a DCGAN": (_space("dcgan-mnist", gp_weight=10.0), "dcgan",
                              "'gp_weight' is not a setting of trainable 'dcgan'"),
    "the classes of a cGAN": (_space("cgan-fashion-mnist", n_classes=3), "cgan",
                              "'n_classes' is not a setting"),
    "a zero width": (_space("dcgan-mnist", g_width=0), "dcgan", "g_width: 0 is not allowed"),
    "an unknown loss": (_space("dcgan-mnist", loss="wasserstein"), "dcgan",
                        "loss: 'wasserstein' is not allowed; it must be one of bce, hinge"),
    "a hinge loss for a WGAN-GP": (_space("wgan-gp-mnist", loss="hinge"), "wgan-gp",
                                   "'loss' is not a setting of trainable 'wgan-gp'"),
    "spectral norm as a word": (_space("cgan-fashion-mnist", spectral_norm="yes"), "cgan",
                                "spectral_norm: 'yes' is not allowed; it must be true or false"),
    "no dataset": (dataclasses.replace(load_space("dcgan-mnist"), config={"epochs": 2}), "dcgan",
                   "config.dataset: missing"),
}


@pytest.mark.parametrize(("space", "trainable", "message"), BAD.values(), ids=BAD.keys())
def test_prepare_refuses_bad_settings_with_one_line(space, trainable: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        get_trainable(trainable).prepare(space)
    assert "\n" not in str(caught.value)


def _artifacts(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, path)}


def _check_children(client: MlflowClient, children: list, metrics: set[str]) -> None:
    """Both trials finished, with every score at epochs 1 and 2, a grid for each and a model."""
    assert len(children) == 2
    for child in children:
        run_id = child.info.run_id
        assert child.info.status == "FINISHED"
        for metric in metrics:
            assert sorted(m.step for m in client.get_metric_history(run_id, metric)) == [1, 2], metric
        values = child.data.metrics
        assert values["clf_fid"] > 0 and values["clf_kid"] > -0.1
        assert 0 <= values["precision"] <= 1 and 0 <= values["recall"] <= 1
        assert 0.5 < values["classifier_accuracy"] <= 1
        assert _artifacts(client, run_id, "samples") == {"samples/epoch-0001.png", "samples/epoch-0002.png"}
        assert "model/MLmodel" in _artifacts(client, run_id, "model")


def _grid_shape(client: MlflowClient, run_id: str, tmp_path: Path) -> tuple[int, ...]:
    import matplotlib.image

    path = client.download_artifacts(run_id, "samples/epoch-0002.png", str(tmp_path))
    return matplotlib.image.imread(path).shape


GAN_METRICS = {"g_loss", "d_loss", "clf_fid", "clf_kid", "precision", "recall", "classifier_accuracy"}


def _smoke_search(searched: SmokeSearch, space: str, metrics: set[str]):
    """The session's random ``--smoke`` search of 2 trials (``smoke_search``), checked by
    :func:`_check_children`; the result, the parent run, the child runs and a client."""
    parent, children = parent_and_children(searched.tracking_uri, space)
    client = MlflowClient(searched.tracking_uri)
    assert searched.result.status is TrialStatus.FINISHED
    _check_children(client, children, metrics)
    return searched.result, parent, children, client


def test_dcgan_smoke_search_scores_each_epoch_and_logs_a_generator_of_unit_images(
        smoke_search, tmp_path: Path) -> None:
    import mlflow
    import torch

    searched = smoke_search("dcgan-mnist")
    result, parent, children, client = _smoke_search(searched, "dcgan-mnist", GAN_METRICS)
    assert len(_grid_shape(client, children[0].info.run_id, tmp_path)) == 3  # an image, drawn
    assert result.model_uri == f"runs:/{result.best.run_id}/model"
    assert parent.data.tags["tuneforge.best_model_uri"] == result.model_uri
    mlflow.set_tracking_uri(searched.tracking_uri)
    latent_dim = int(client.get_run(result.best.run_id).data.params["latent_dim"])
    generator = mlflow.pytorch.load_model(result.model_uri)
    assert not generator.training and generator.eval() is generator, "a torch module in eval mode"
    images = generator(torch.randn(5, latent_dim))
    assert images.shape == (5, 1, 28, 28) and float(images.min()) >= 0 and float(images.max()) <= 1
    assert float(images.std()) > 0.01, "not a constant image"
    # The parent run holds a copy: the search's best generator.
    best = mlflow.pytorch.load_model(f"runs:/{parent.info.run_id}/best_model")
    z = torch.randn(3, latent_dim)
    assert torch.equal(best(z), generator(z))


def test_cgan_smoke_search_reports_class_accuracy_and_logs_a_generator_of_requested_classes(
        smoke_search) -> None:
    import mlflow
    import torch

    searched = smoke_search("cgan-fashion-mnist")
    result, _, children, client = _smoke_search(searched, "cgan-fashion-mnist",
                                                GAN_METRICS | {"class_accuracy"})
    assert all(0 <= c.data.metrics["class_accuracy"] <= 1 for c in children)
    params = client.get_run(result.best.run_id).data.params
    assert params["n_classes"] == "10"
    mlflow.set_tracking_uri(searched.tracking_uri)
    generator = mlflow.pytorch.load_model(result.model_uri)
    z = torch.randn(1, int(params["latent_dim"])).repeat(10, 1)
    images = generator(z, torch.arange(10))
    assert images.shape == (10, 1, 28, 28) and float(images.min()) >= 0 and float(images.max()) <= 1
    assert not torch.allclose(images[0], images[1]), "the label changes the image"


def test_wgan_gp_smoke_search_reports_the_critics_estimate_and_penalty(smoke_search) -> None:
    _, _, children, _ = _smoke_search(smoke_search("wgan-gp-mnist"), "wgan-gp-mnist",
                                      GAN_METRICS | {"wasserstein", "gradient_penalty"})
    assert all(np.isfinite(c.data.metrics["wasserstein"]) and c.data.metrics["gradient_penalty"] >= 0
               for c in children)


def test_a_hinge_loss_dcgan_with_a_spectrally_normalised_discriminator_trains(ray_local,
                                                                            tmp_path: Path) -> None:
    from ray import tune

    space = _space("dcgan-mnist", loss="hinge", spectral_norm=True)
    trainable = get_trainable("dcgan")
    config = {**trainable.prepare(space), **space.decode(np.full(space.n_dims, 0.5)), "smoke": True}
    function = tune.with_resources(trainable.function, {"cpu": 1})
    [trial] = tune.run(function, config=config, storage_path=str(tmp_path), verbose=0).trials
    assert trial.status == "TERMINATED" and trial.last_result["epoch"] == 2
    assert np.isfinite(trial.last_result["g_loss"])
    assert trial.last_result["d_loss"] >= 0, "a hinge loss is never negative"
    assert trial.last_result["clf_fid"] > 0
