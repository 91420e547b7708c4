"""Labelled image sets as uint8 NHWC arrays: Fashion-MNIST (Debian IDX files), scikit-learn digits,
and any folder (or zip) of class folders.

Everything here is TensorFlow-free. Images from files go through ``inference.imagecodec.decode_image``
and ``inference.preprocess.image_to_pixels``, the exact code serving runs, so a model never sees pixels
prepared differently from the ones it will be asked about. Each dataset carries a sha256 fingerprint of
its source content, recorded in the model's metadata.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from inference.errors import ConfigError, InvalidInput
from inference.metadata import Preprocessing
from inference.preprocess import image_to_pixels

FASHION_MNIST = "fashion-mnist"
DIGITS = "digits"
DATASET_NAMES = (FASHION_MNIST, DIGITS)
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
FASHION_MNIST_LABELS = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
MIN_IMAGES_PER_CLASS = 3  # one each for train, validation and test


@dataclass(frozen=True)
class Split:
    """Images ``x`` (uint8 [N, H, W, C]) with integer labels ``y`` (int64 [N])."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, indices: np.ndarray) -> Split:
        return Split(self.x[indices], self.y[indices])

    def sample(self, n: int, seed: int) -> Split:
        """A stratified random subset of at most ``n`` images (for calibration and quick tuning runs)."""
        if n >= len(self):
            return self
        (idx,) = stratified_split(self.y, (n / len(self),), seed)[1:]
        return self.subset(np.sort(idx))


@dataclass(frozen=True)
class Dataset:
    name: str
    labels: tuple[str, ...]
    train: Split
    val: Split
    test: Split
    fingerprint: str
    test_source: str  # "official" (the data set's own test split) or "held-out" (split off by seed)
    flip_invariant: bool = True  # horizontal flips keep the label (false for digits)
    split_seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.train.x.shape[1:])  # type: ignore[return-value]

    def info(self) -> dict[str, Any]:
        """What metadata.json records about the data a model was trained on."""
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "num_classes": len(self.labels),
            "image_shape": list(self.shape),
            "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            "test_source": self.test_source,
            "split_seed": self.split_seed,
            **self.extra,
        }


# ---- splitting ---------------------------------------------------------------------------------------
def stratified_split(y: np.ndarray, fractions: Iterable[float], seed: int) -> list[np.ndarray]:
    """Split indices of ``y`` per class: ``[rest, part_1, part_2, ...]`` with each part taking its fraction
    of every class (at least one image of each class when the fraction is > 0). Seeded, so a rerun or an
    export that reloads the data gets the same split."""
    fractions = tuple(fractions)
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        start = 0
        for i, frac in enumerate(fractions, start=1):
            n = max(1, round(len(idx) * frac)) if frac > 0 else 0
            n = min(n, len(idx) - start - 1)  # always leave one for the rest
            parts[i].append(idx[start : start + max(n, 0)])
            start += max(n, 0)
        parts[0].append(idx[start:])
    return [np.sort(np.concatenate(p)).astype(np.int64) if p else np.zeros(0, np.int64) for p in parts]


def _split(
    name: str,
    labels: tuple[str, ...],
    x: np.ndarray,
    y: np.ndarray,
    fingerprint: str,
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    flip_invariant: bool,
    extra: dict[str, Any] | None = None,
) -> Dataset:
    counts = np.bincount(y, minlength=len(labels))
    if (counts < MIN_IMAGES_PER_CLASS).any():
        few = ", ".join(f"{labels[i]!r} ({counts[i]})" for i in np.flatnonzero(counts < MIN_IMAGES_PER_CLASS))
        raise InvalidInput(
            f"dataset {name}: each class needs at least {MIN_IMAGES_PER_CLASS} images (train/validation/test); "
            f"too few in {few}"
        )
    train, val, test = stratified_split(y, (val_fraction, test_fraction), seed)
    return Dataset(
        name,
        labels,
        Split(x[train], y[train]),
        Split(x[val], y[val]),
        Split(x[test], y[test]),
        fingerprint,
        test_source="held-out",
        flip_invariant=flip_invariant,
        split_seed=seed,
        extra=extra or {},
    )


# ---- geometry ----------------------------------------------------------------------------------------
def resize_pixels(x: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """Bring uint8 NHWC arrays to ``spec``'s size and colour mode through the serving code path."""
    if tuple(x.shape[1:]) == spec.shape:
        return x
    mode = "L" if x.shape[-1] == 1 else "RGB"
    out = np.empty((len(x), *spec.shape), dtype=np.uint8)
    for i, img in enumerate(x):
        out[i] = image_to_pixels(Image.fromarray(img[:, :, 0] if mode == "L" else img, mode), spec)
    return out


# ---- Fashion-MNIST -----------------------------------------------------------------------------------
def _read_idx(path: Path, magic: int, digest: hashlib._Hash) -> np.ndarray:
    try:
        raw = path.read_bytes()
        data = gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ConfigError(f"cannot read Fashion-MNIST file {path.name}: {exc}") from None
    digest.update(raw)
    ndim = magic & 0xFF
    if len(data) < 4 + 4 * ndim or int.from_bytes(data[:4], "big") != magic:
        raise ConfigError(f"Fashion-MNIST file {path.name} is not an IDX file (bad magic number)")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ConfigError(f"Fashion-MNIST file {path.name} is truncated")
    return body.reshape(dims)


def load_fashion_mnist(
    spec: Preprocessing | None = None, *, val_fraction: float = 0.1, seed: int = 0, root: Path | None = None
) -> Dataset:
    """The official 60k/10k split; validation (for early stopping) is a stratified part of the 60k."""
    root = Path(root or os.environ.get("IMGSERVE_FASHION_MNIST_DIR", FASHION_MNIST_DIR))
    if not (root / "train-images-idx3-ubyte.gz").is_file():
        raise ConfigError(
            f"Fashion-MNIST not found in {root}: install Debian's dataset-fashion-mnist (make system-deps) "
            "or set IMGSERVE_FASHION_MNIST_DIR"
        )
    digest = hashlib.sha256()
    arrays = {}
    for split in ("train", "t10k"):
        arrays[f"{split}_x"] = _read_idx(root / f"{split}-images-idx3-ubyte.gz", 0x0803, digest)[..., None]
        arrays[f"{split}_y"] = _read_idx(root / f"{split}-labels-idx1-ubyte.gz", 0x0801, digest).astype(
            np.int64
        )
    train_idx, val_idx = stratified_split(arrays["train_y"], (val_fraction,), seed)
    x_train, x_test = arrays["train_x"], arrays["t10k_x"]
    if spec is not None:
        x_train, x_test = resize_pixels(x_train, spec), resize_pixels(x_test, spec)
    y_train = arrays["train_y"]
    return Dataset(
        FASHION_MNIST,
        FASHION_MNIST_LABELS,
        Split(x_train[train_idx], y_train[train_idx]),
        Split(x_train[val_idx], y_train[val_idx]),
        Split(x_test, arrays["t10k_y"]),
        digest.hexdigest(),
        test_source="official",
        flip_invariant=True,
        split_seed=seed,
    )


# ---- scikit-learn digits -----------------------------------------------------------------------------
def load_digits_dataset(
    spec: Preprocessing | None = None,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> Dataset:
    """1,797 8x8 digits bundled with scikit-learn (no download): the tiny set the tests train on."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
    y = bunch.target.astype(np.int64)
    fingerprint = hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()
    if spec is not None:
        x = resize_pixels(x, spec)
    labels = tuple(str(int(n)) for n in bunch.target_names)
    return _split(
        DIGITS,
        labels,
        x,
        y,
        fingerprint,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        flip_invariant=False,
    )


@dataclass(frozen=True)
class ClassOrder:
    """A model's labels and their folder names (``ModelCard.label_folders``): folders are matched to labels
    through these, and the labels keep this order, so a warm start or a comparison lines up class by class."""

    labels: tuple[str, ...]
    folders: tuple[str, ...]


# ---- entry point -------------------------------------------------------------------------------------
def native_shape(source: str) -> tuple[int, int, int] | None:
    """The built-in sets' own image shape; ``None`` for folders (their images come in any size)."""
    return {FASHION_MNIST: (28, 28, 1), DIGITS: (8, 8, 1)}.get(source)


def load_dataset(
    source: str,
    spec: Preprocessing | None = None,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.15,
    seed: int = 0,
    order: ClassOrder | None = None,
) -> Dataset:
    """``fashion-mnist``, ``digits``, or a path to a folder/zip of class folders. ``spec`` sets the image
    size and colour mode (built-in sets default to their own; a folder needs one); ``order`` fixes a
    folder set's labels (see :class:`ClassOrder`)."""
    if source == FASHION_MNIST:
        return load_fashion_mnist(spec, val_fraction=val_fraction, seed=seed)
    if source == DIGITS:
        return load_digits_dataset(spec, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    path = Path(source)
    if not path.exists():
        raise ConfigError(
            f"dataset {source!r} not found: use {' or '.join(DATASET_NAMES)}, or the path of a folder "
            "(or zip) of class folders"
        )
    if spec is None:
        raise ConfigError("a folder dataset needs an image size (e.g. --img-size 64)")
    from .folders import load_image_folder

    return load_image_folder(
        path, spec, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, order=order
    )
