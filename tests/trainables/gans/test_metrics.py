"""The GANs' sample-quality metrics and their feature classifier: improved precision and recall on
toy features (identical sets, a collapsed generator, far-away samples, against a naive count);
``SampleQuality`` on scikit-learn's digits (a real set against itself scores FID and KID about 0
and precision and recall 1, noise scores far worse than other real images, a wrong count is
refused, the global RNG is untouched); ``train_classifier`` (a floor on its smoke accuracy, seeded,
the caller's RNG untouched); and ``feature_classifier``'s cache on disk (the second call loads,
never trains).

One smoke classifier is trained for the module and one ``SampleQuality`` is scored three times;
the seeding checks train on 256 images; everything else is cheap."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from tuneforge.trainables.gans import features
from tuneforge.trainables.gans.features import (
    FeatureClassifier,
    TrainedClassifier,
    accuracy,
    feature_classifier,
    train_classifier,
)
from tuneforge.trainables.gans.metrics import SampleQuality, precision_recall
from tuneforge.trainables.images import ImageSplits, load_image_dataset

pytestmark = pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save all extracted")

SMOKE_ACCURACY_FLOOR = 0.7
"""train_classifier(digits, seed=0, smoke=True) scores 0.81 on the test split (seeds 1 and 2: 0.80
and 0.72); on digits' 1,259 training images a smoke training is the full one (two epochs, 20 Adam
steps). The floor is far above chance (0.1) and a little below what it gets."""


@dataclass(frozen=True)
class Trained:
    """The module's classifier and the global torch RNG state just before and after its training."""

    classifier: TrainedClassifier
    rng_before: torch.Tensor
    rng_after: torch.Tensor


def _floats(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(images, dtype=np.float32) / 255.0)


def _same_weights(first: FeatureClassifier, second: FeatureClassifier) -> bool:
    one, other = first.state_dict(), second.state_dict()
    return one.keys() == other.keys() and all(torch.equal(one[name], other[name]) for name in one)


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageSplits]:
    """Digits, decoded into a cache of the module's own (8x8 grey, 1,259 / 269 / 269 images)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNEFORGE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield load_image_dataset("digits")


@pytest.fixture(scope="module")
def trained(splits: ImageSplits) -> Trained:
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    classifier = train_classifier(splits, seed=0, smoke=True)
    return Trained(classifier, before, torch.get_rng_state())


@pytest.fixture(scope="module")
def quality(splits: ImageSplits, trained: Trained) -> SampleQuality:
    """Scores against digits' 269 test images."""
    return SampleQuality(trained.classifier.network, _floats(splits.test_images))


@pytest.fixture(scope="module")
def scores(splits: ImageSplits, quality: SampleQuality) -> dict[str, dict[str, float]]:
    """The scores of: the test images themselves, the validation images (other real digits, as
    many) and uniform noise."""
    real = _floats(splits.test_images)
    assert len(splits.val_images) == len(real), "the validation split is as large as the test split"
    noise = torch.rand(real.shape, generator=torch.Generator().manual_seed(0))
    return {"self": quality(real), "real": quality(_floats(splits.val_images)), "noise": quality(noise)}


# -- precision and recall ----------------------------------------------------------------------------


def _grid(n_side: int = 15) -> torch.Tensor:
    """n_side**2 points spread evenly over the unit square."""
    axis = torch.linspace(0, 1, n_side)
    return torch.cartesian_prod(axis, axis)


def test_identical_sets_have_full_precision_and_recall() -> None:
    points = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
    assert precision_recall(points, points.clone()) == (1.0, 1.0)


def test_a_collapsed_generator_is_precise_but_has_low_recall() -> None:
    real = _grid()
    fake = torch.tensor([0.1, 0.1]) + 0.005 * torch.randn(225, 2, generator=torch.Generator().manual_seed(0))
    precision, recall = precision_recall(real, fake)
    assert precision > 0.95, "every sample lies among real points"
    assert recall < 0.05, "the samples cover one corner of the real set"


def test_samples_far_from_the_data_have_no_precision() -> None:
    real = _grid()
    precision, recall = precision_recall(real, real + 100)
    assert precision == 0.0
    assert recall == 0.0


def test_precision_and_recall_swap_when_the_sets_do() -> None:
    real = _grid()
    fake = torch.tensor([0.1, 0.1]) + 0.005 * torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    precision, recall = precision_recall(real, fake)
    assert precision_recall(fake, real) == (recall, precision)


def test_precision_and_recall_match_a_naive_count_across_batches() -> None:
    """More points than one batch of 500: the batched computation equals the plain definition."""
    generator = torch.Generator().manual_seed(0)
    real, fake = torch.randn(700, 3, generator=generator), torch.randn(600, 3, generator=generator) + 0.5

    def inside(queries: torch.Tensor, centres: torch.Tensor, k: int = 3) -> float:
        radii = torch.cdist(centres, centres).sort(dim=1).values[:, k]  # column 0: the point itself
        return (torch.cdist(queries, centres) <= radii[None, :]).any(dim=1).double().mean().item()

    precision, recall = precision_recall(real, fake)
    assert precision == pytest.approx(inside(fake.double(), real.double()))
    assert recall == pytest.approx(inside(real.double(), fake.double()))
    assert 0.2 < precision < 1 and 0.2 < recall < 1, "a case where neither is trivial"


# -- SampleQuality -----------------------------------------------------------------------------------


def test_a_real_set_against_itself_scores_fid_about_zero(scores) -> None:
    assert abs(scores["self"]["clf_fid"]) < 1e-6  # it comes out at about 3e-10


def test_a_real_set_against_itself_scores_kid_about_zero_up_to_the_estimators_bias(quality, scores) -> None:
    """KID comes out at -0.03, not 0 (noise: 1.9). The unbiased MMD estimator leaves out k(x, x)
    within a set but not between sets, so two identical sets of n score exactly
    2 (mean off-diagonal kernel - mean diagonal kernel) / n <= 0, on the cubic kernel
    k(x, y) = (x.y / F + 1)^3 (the subsets are the whole set, as n < 1000)."""
    features = quality.real_features.double()
    kernel = (features @ features.T / features.shape[1] + 1) ** 3
    n = len(kernel)
    off_diagonal = (kernel.sum() - kernel.diag().sum()) / (n * (n - 1))
    bias = 2 * (off_diagonal - kernel.diag().mean()) / n
    self_kid = scores["self"]["clf_kid"]
    torch.testing.assert_close(torch.tensor(self_kid, dtype=torch.float64), bias, rtol=1e-2, atol=1e-6)
    assert self_kid <= 0
    assert abs(self_kid) < 0.05 * scores["noise"]["clf_kid"]


def test_a_real_set_against_itself_has_full_precision_and_recall(scores) -> None:
    assert scores["self"]["precision"] == 1.0
    assert scores["self"]["recall"] == 1.0


def test_noise_scores_far_worse_than_other_real_images(scores) -> None:
    real, noise = scores["real"], scores["noise"]
    assert real["clf_fid"] > 0, "other real digits are not the same set"
    assert noise["clf_fid"] > 10 * real["clf_fid"]
    assert noise["clf_kid"] > 10 * abs(real["clf_kid"])
    assert noise["precision"] < 0.1 < real["precision"]
    assert real["recall"] > 0.5


def test_sample_quality_refuses_a_different_number_of_images(splits, trained) -> None:
    quality = SampleQuality(trained.classifier.network, _floats(splits.test_images[:32]))
    for n in (31, 33):
        with pytest.raises(ValueError, match=rf"^SampleQuality: {n} generated images against 32 real ones"):
            quality(_floats(splits.val_images[:n]))


def test_sample_quality_leaves_the_global_rng_alone(splits, trained) -> None:
    torch.manual_seed(99)
    before = torch.get_rng_state()
    quality = SampleQuality(trained.classifier.network, _floats(splits.test_images[:32]))
    first = quality(_floats(splits.val_images[:32]))
    assert torch.equal(torch.get_rng_state(), before)
    assert quality(_floats(splits.val_images[:32])) == first, "KID's subsets are drawn the same each time"


# -- the classifier ----------------------------------------------------------------------------------


def test_the_smoke_classifier_classifies_digits_well_above_chance(splits, trained) -> None:
    test_accuracy = trained.classifier.test_accuracy
    assert test_accuracy > SMOKE_ACCURACY_FLOOR
    assert test_accuracy == accuracy(trained.classifier.network, splits.test_images, splits.test_labels)


def test_the_accuracy_is_the_share_of_correct_predictions(splits, trained) -> None:
    network = trained.classifier.network
    with torch.no_grad():
        predicted = network.classify(_floats(splits.val_images)).argmax(dim=1).numpy()
    expected = float((predicted == splits.val_labels).mean())
    assert accuracy(network, splits.val_images, splits.val_labels) == pytest.approx(expected)


def test_the_trained_classifier_is_frozen(trained) -> None:
    network = trained.classifier.network
    assert not network.training
    assert not any(parameter.requires_grad for parameter in network.parameters())
    assert network(torch.rand(5, 1, 8, 8)).shape == (5, FeatureClassifier.num_features)


def test_training_leaves_the_global_rng_alone(trained) -> None:
    assert torch.equal(trained.rng_after, trained.rng_before)


def test_training_with_the_same_seed_gives_the_same_weights_whatever_the_global_rng(splits) -> None:
    few = splits.subset(n_train=256, n_val=8)
    torch.manual_seed(1)
    first = train_classifier(few, seed=3, smoke=True)
    torch.manual_seed(2)
    second = train_classifier(few, seed=3, smoke=True)
    assert _same_weights(first.network, second.network)
    assert first.test_accuracy == second.test_accuracy
    other = train_classifier(few, seed=4, smoke=True)
    assert not _same_weights(first.network, other.network), "the seed decides the weights"


# -- the cache ---------------------------------------------------------------------------------------


class _Training:
    """Stands in for train_classifier (whose training the tests above cover): counts its calls and
    returns the module's classifier, or fails if training is not allowed."""

    def __init__(self, classifier: TrainedClassifier) -> None:
        self.classifier = classifier
        self.calls: list[tuple[int, bool]] = []
        self.allowed = True

    def __call__(self, splits: ImageSplits, *, seed: int = 0, smoke: bool = False) -> TrainedClassifier:
        assert self.allowed, "feature_classifier trained although its file was cached"
        self.calls.append((seed, smoke))
        return self.classifier


@pytest.fixture
def training(monkeypatch, tmp_path: Path, trained: Trained) -> _Training:
    monkeypatch.setenv("TUNEFORGE_CACHE_DIR", str(tmp_path))
    stand_in = _Training(trained.classifier)
    monkeypatch.setattr(features, "train_classifier", stand_in)
    return stand_in


def test_feature_classifier_trains_once_then_loads_its_file(splits, trained, training, tmp_path) -> None:
    first = feature_classifier("digits", splits, seed=0, smoke=True)
    assert training.calls == [(0, True)]
    [saved] = tmp_path.rglob("*.pt")
    written_ns = saved.stat().st_mtime_ns

    training.allowed = False
    second = feature_classifier("digits", splits, seed=0, smoke=True)
    assert saved.stat().st_mtime_ns == written_ns, "the cached file is not rewritten"
    assert list(tmp_path.rglob("*.pt")) == [saved]
    for loaded in (first, second):
        assert _same_weights(loaded.network, trained.classifier.network)
        assert loaded.test_accuracy == trained.classifier.test_accuracy
        assert not loaded.network.training
        assert not any(parameter.requires_grad for parameter in loaded.network.parameters())


def test_feature_classifiers_of_other_seeds_and_of_full_training_are_cached_apart(
        splits, training, tmp_path) -> None:
    for seed, smoke in ((0, True), (1, True), (0, False), (1, True)):
        feature_classifier("digits", splits, seed=seed, smoke=smoke)
    assert training.calls == [(0, True), (1, True), (0, False)]
    assert len(list(tmp_path.rglob("*.pt"))) == 3
