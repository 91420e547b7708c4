"""Class-folder image sets (a directory or a zip of ``<class>/<image>`` files) as a :class:`Dataset`.

Images go through ``inference.imagecodec.decode_image`` and ``inference.preprocess.image_to_pixels``, the
code serving runs. Classes are matched to a model's labels through its ``label_folders`` when an order is
given (warm starts, comparisons), never by sorted folder order.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from inference.errors import ImgServeError, InvalidInput
from inference.imagecodec import IMAGE_SUFFIXES, decode_image
from inference.labels import match_folders
from inference.metadata import Preprocessing
from inference.preprocess import image_to_pixels

from .datasets import ClassOrder, Dataset, _split


@dataclass(frozen=True)
class _Entry:
    relpath: str  # shown in error messages, relative to the dataset root
    label: str
    read: Callable[[], bytes]


def _is_image(name: str) -> bool:
    p = PurePosixPath(name)
    return p.suffix.lower() in IMAGE_SUFFIXES and not any(
        part.startswith(".") or part == "__MACOSX" for part in p.parts
    )


def image_files(root: Path) -> list[tuple[str, Path]]:
    """The files a class-folder dataset consists of, sorted, as (path relative to ``root``, path): images
    inside a class folder, hidden files and other suffixes left out. What training reads, and all that
    ``imgserve retrain --via`` uploads (a folder also holding other things is not sent whole)."""
    files = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if len(PurePosixPath(rel).parts) >= 2 and _is_image(rel) and path.is_file():
            files.append((rel, path))
    return files


def _dir_entries(root: Path) -> list[_Entry]:
    return [_Entry(rel, PurePosixPath(rel).parts[0], path.read_bytes) for rel, path in image_files(root)]


def _zip_entries(archive: zipfile.ZipFile) -> list[_Entry]:
    names = sorted(n for n in archive.namelist() if not n.endswith("/") and _is_image(n))
    parts = [PurePosixPath(n).parts for n in names]
    strip = 0  # drop wrapping folders ("data/cat/1.png") while every file keeps a class folder
    while parts and all(len(p) > strip + 2 for p in parts) and len({p[strip] for p in parts}) == 1:
        strip += 1
    return [
        _Entry("/".join(p[strip:]), p[strip], lambda n=n: archive.read(n))
        for n, p in zip(names, parts, strict=True)
        if len(p) - strip >= 2
    ]


def load_image_folder(
    source: Path,
    spec: Preprocessing,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.15,
    seed: int = 0,
    order: ClassOrder | None = None,
) -> Dataset:
    """One subfolder per class (``cat/001.jpg``), or a zip of such folders. Without ``order`` the class names
    are the folder names, sorted; with it, folders are matched to its labels (by folder name or label) and
    every label must have a folder. Files with other suffixes and hidden files are ignored."""
    split = (spec, val_fraction, test_fraction, seed, order)
    if source.is_dir():
        return _from_entries(source.name, _dir_entries(source), *split)
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError):
        raise InvalidInput(f"dataset {source.name} is neither a folder nor a zip of class folders") from None
    with archive:
        return _from_entries(source.stem, _zip_entries(archive), *split)


def _from_entries(
    name: str,
    entries: list[_Entry],
    spec: Preprocessing,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    order: ClassOrder | None = None,
) -> Dataset:
    if not entries:
        raise InvalidInput(
            f"dataset {name} holds no images in class folders (expected <class>/<image>.jpg|png|webp|bmp)"
        )
    folders = sorted({e.label for e in entries})
    if order is not None:
        labels = order.labels
        index = match_folders(folders, order.labels, order.folders)
    else:
        labels = tuple(folders)
        index = {label: i for i, label in enumerate(labels)}
    if len(labels) < 2:
        raise InvalidInput(
            f"dataset {name} has {len(labels)} class folder ({labels[0]!r}); at least 2 are needed"
        )
    digest = hashlib.sha256(json.dumps(labels).encode())
    x = np.empty((len(entries), *spec.shape), dtype=np.uint8)
    y = np.empty(len(entries), dtype=np.int64)
    for i, entry in enumerate(entries):
        data = entry.read()
        digest.update(entry.relpath.encode() + b"\0" + hashlib.sha256(data).digest())
        try:
            image = decode_image(data, draft=(spec.pil_mode, (spec.width, spec.height)))
            x[i] = image_to_pixels(image, spec)
        except ImgServeError as exc:
            raise InvalidInput(f"cannot read image {entry.relpath}: {exc.message}") from None
        y[i] = index[entry.label]
    return _split(
        name,
        labels,
        x,
        y,
        digest.hexdigest(),
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        flip_invariant=True,
        extra={"source": "folder"},
    )


