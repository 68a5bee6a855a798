"""Sample quality of a generator, on a dataset classifier's features (:mod:`.features`).

- ``clf_fid``: the Fréchet distance between Gaussians fitted to the features of generated and of
  held-out real images (Heusel et al. 2017), by torchmetrics' ``FrechetInceptionDistance`` with the
  classifier as its custom feature extractor (its sums and covariances in float64).
- ``clf_kid``: the kernel (cubic polynomial) MMD of the same features (Bińkowski et al. 2018), by
  torchmetrics' ``KernelInceptionDistance``, averaged over random subsets drawn with a fixed seed.
- ``precision`` and ``recall`` (Kynkäänniemi et al. 2019): the fraction of generated images inside
  the real images' k-nearest-neighbour manifold (are the samples realistic?) and of real images
  inside the generated ones' (does the generator cover the data, or has it collapsed to a few
  modes?), k = 3.

These are "classifier-feature" scores: they compare trials on one dataset and feature seed, and are
not comparable with published FIDs, which use Inception-v3's ImageNet features on other data.
Both sets have a fixed size, and the real set and the generator's noise are fixed, so an epoch's
score depends only on the generator.
"""

from __future__ import annotations

import torch
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from tuneforge.trainables.gans.features import FeatureClassifier

__all__ = ["SampleQuality", "precision_recall"]

_K = 3
_KID_SUBSETS = 20
_KID_SUBSET_SIZE = 1000
_KID_SEED = 0
_BATCH = 500


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = _K,
                     real_radii: torch.Tensor | None = None) -> tuple[float, float]:
    """Improved precision and recall of ``fake`` features (M, F) against ``real`` (N, F).

    Each set's manifold is the union of balls around its points with radius the distance to the
    point's k-th nearest neighbour in the set. Precision: the fraction of fake points inside the
    real manifold; recall: the fraction of real points inside the fake one. ``real_radii``: the
    real set's, computed once by a caller that scores many fake sets against it."""
    real, fake = real.double(), fake.double()
    real_radii = _radii(real, k) if real_radii is None else real_radii
    return _inside(fake, real, real_radii), _inside(real, fake, _radii(fake, k))


def _radii(points: torch.Tensor, k: int) -> torch.Tensor:
    """Each point's distance to its k-th nearest other point."""
    return torch.cat([torch.cdist(chunk, points).kthvalue(k + 1, dim=1).values  # +1: itself at 0
                      for chunk in points.split(_BATCH)])


def _inside(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    """The fraction of ``queries`` within ``radii`` of at least one of ``centres``."""
    hits = [(torch.cdist(chunk, centres) <= radii[None, :]).any(dim=1) for chunk in queries.split(_BATCH)]
    return float(torch.cat(hits).double().mean())


class SampleQuality:
    """Scores of generated images against one fixed set of real images.

    Built once per trial (the real set's features are computed here, once); called by the GAN
    family's ``evaluate`` every epoch with that epoch's generated images, as many as real ones.
    Images are float tensors (N, C, H, W) in [0, 1] on the classifier's device."""

    def __init__(self, classifier: FeatureClassifier, real: torch.Tensor) -> None:
        self.classifier = classifier
        self.n = len(real)
        # sync_on_compute=False: a data-parallel trial scores on rank 0 alone; torchmetrics would
        # otherwise gather the other ranks' states, which never come (they are training).
        local = {"reset_real_features": False, "normalize": True, "sync_on_compute": False}
        self.fid = FrechetInceptionDistance(feature=classifier, **local)
        whole = self.n <= _KID_SUBSET_SIZE  # one subset: the whole set (more would repeat it)
        self.kid = KernelInceptionDistance(feature=classifier, **local, subsets=1 if whole else _KID_SUBSETS,
                                           subset_size=min(_KID_SUBSET_SIZE, self.n))
        self.fid.to(real.device)
        self.kid.to(real.device)
        for images in real.split(_BATCH):
            self.fid.update(images, real=True)
            self.kid.update(images, real=True)
        self.real_features = self.features(real)
        self.real_radii = _radii(self.real_features.double(), _K)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The classifier's features (N, 128) of ``images``, in batches."""
        with torch.no_grad():
            return torch.cat([self.classifier(batch) for batch in images.split(_BATCH)])

    def __call__(self, fake: torch.Tensor) -> dict[str, float]:
        """``clf_fid``, ``clf_kid``, ``precision`` and ``recall`` of ``fake`` (as many images as
        the real set)."""
        if len(fake) != self.n:
            raise ValueError(f"SampleQuality: {len(fake)} generated images against {self.n} real ones; "
                             "give as many")
        self.fid.reset()  # keeps the real features (reset_real_features=False)
        self.kid.reset()
        for images in fake.split(_BATCH):
            self.fid.update(images, real=False)
            self.kid.update(images, real=False)
        with torch.random.fork_rng(devices=[fake.device] if fake.is_cuda else []):
            torch.manual_seed(_KID_SEED)  # KID's subsets: the same every epoch, the trial's RNG untouched
            kid_mean, _ = self.kid.compute()
        precision, recall = precision_recall(self.real_features, self.features(fake),
                                             real_radii=self.real_radii)
        return {"clf_fid": float(self.fid.compute()), "clf_kid": float(kid_mean),
                "precision": precision, "recall": recall}
