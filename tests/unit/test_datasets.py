"""Class-folder datasets (TF-free): labels, splits, fingerprints and the errors a user sees."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference.errors import ConfigError, InvalidInput
from inference.metadata import Preprocessing
from training.datasets import load_dataset, stratified_split

SPEC = Preprocessing(height=16, width=16, channels=3)
COLOURS = {"blue": (0, 0, 255), "green": (0, 255, 0), "red": (255, 0, 0)}


def make_folder(root: Path, per_class: int = 6) -> Path:
    """Solid-colour images in three class folders, mixed formats and sizes, plus files to be ignored."""
    for label, rgb in COLOURS.items():
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            image = Image.new("RGB", (20 + i, 24), rgb)
            fmt, suffix = [("PNG", "png"), ("JPEG", "jpg"), ("BMP", "bmp"), ("WEBP", "webp")][i % 4]
            image.save(root / label / f"{i:03d}.{suffix}", format=fmt, quality=95)
        (root / label / "notes.txt").write_text("not an image")
        (root / label / ".hidden.png").write_bytes(b"ignored")
    (root / "README.md").write_text("top-level files are ignored")
    return root


def test_folder_dataset_labels_and_pixels(tmp_path: Path) -> None:
    ds = load_dataset(str(make_folder(tmp_path / "colours")), SPEC, seed=1)
    assert ds.labels == ("blue", "green", "red")
    assert ds.shape == (16, 16, 3) and ds.train.x.dtype == np.uint8
    assert len(ds.train) + len(ds.val) + len(ds.test) == 18
    for split in (ds.train, ds.val, ds.test):  # stratified: every class in every split
        assert set(split.y.tolist()) == {0, 1, 2}
        for x, y in zip(split.x, split.y, strict=True):  # each image's dominant channel is its class colour
            assert int(np.argmax(x.reshape(-1, 3).mean(0))) == {0: 2, 1: 1, 2: 0}[int(y)]
    again = load_dataset(str(tmp_path / "colours"), SPEC, seed=1)
    assert again.fingerprint == ds.fingerprint and np.array_equal(again.test.y, ds.test.y)
    assert ds.info()["sizes"] == {"train": len(ds.train), "val": len(ds.val), "test": len(ds.test)}


def test_zip_of_class_folders(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "colours")
    archive = tmp_path / "colours.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in folder.rglob("*"):
            zf.write(path, Path("wrapped") / path.relative_to(folder))  # a wrapping folder is stripped
    ds = load_dataset(str(archive), SPEC)
    assert ds.labels == ("blue", "green", "red") and len(ds.train) + len(ds.val) + len(ds.test) == 18


def test_stratified_split_is_seeded_and_disjoint() -> None:
    y = np.repeat(np.arange(4), 25)
    rest, val, test = stratified_split(y, (0.1, 0.2), seed=3)
    assert sorted(np.concatenate([rest, val, test]).tolist()) == list(range(100))
    assert np.bincount(y[test]).tolist() == [5] * 4 and np.bincount(y[val]).tolist() == [2] * 4
    assert np.array_equal(test, stratified_split(y, (0.1, 0.2), seed=3)[2])


def test_dataset_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dataset 'nope' not found: use fashion-mnist or digits"):
        load_dataset("nope", SPEC)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="holds no images in class folders"):
        load_dataset(str(tmp_path / "empty"), SPEC)
    one = tmp_path / "one" / "cat"
    one.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (8, 8)).save(one / f"{i}.png")
    with pytest.raises(InvalidInput, match=r"has 1 class folder \('cat'\); at least 2 are needed"):
        load_dataset(str(tmp_path / "one"), SPEC)
    folder = make_folder(tmp_path / "broken")
    (folder / "red" / "003.bmp").write_bytes(b"BM this is not a bitmap")
    with pytest.raises(InvalidInput, match=r"^cannot read image red/003\.bmp: "):
        load_dataset(str(folder), SPEC)
    few = make_folder(tmp_path / "few", per_class=2)
    with pytest.raises(InvalidInput, match="each class needs at least 3 images"):
        load_dataset(str(few), SPEC)
