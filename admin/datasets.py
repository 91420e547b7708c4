"""Uploaded, validated, immutable datasets: ``<data>/datasets/<id>/images/<class>/<file>`` + ``dataset.json``.

An upload is checked whole before anything becomes visible: zip entries with absolute paths, ``..``,
symlinks, a NUL byte in the name or an extreme compression ratio are refused, every file must decode as an
image, and there must be at least two classes. The dataset is built in a staging directory and renamed into place.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from inference.atomic import atomic_write_json, clean_stale_staging, publish_dir, staging_dir
from inference.errors import InvalidInput, NotFound, PayloadTooLarge
from inference.imagecodec import IMAGE_SUFFIXES, decode_image
from inference.labels import is_folder_name
from inference.registry import utc_now

from .settings import AdminSettings

_IGNORED = ("__MACOSX/", ".DS_Store", "Thumbs.db")


@dataclass(frozen=True)
class DatasetInfo:
    id: str
    created_at: str
    classes: dict[str, int]
    num_images: int
    fingerprint: str
    source: str
    base: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_label(label: str) -> str:
    label = label.strip()
    if not is_folder_name(label):
        raise InvalidInput(
            f"invalid class name {label!r}: a class folder name uses letters, digits, space, '_', '-', '.', '+' (max 64); "
            "a label that is not a valid name has a folder name in the model's label_folders"
        )
    return label


def _safe_member_path(info: zipfile.ZipInfo) -> PurePosixPath:
    if "\0" in info.orig_filename:  # zipfile cuts the name at the NUL: "a/\0x.png" would read as folder "a/"
        raise InvalidInput(f"zip entry {info.orig_filename!r} has a NUL byte in its name")
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise InvalidInput(f"zip entry {info.filename!r} has an absolute path")
    path = PurePosixPath(name)
    if any(part == ".." for part in path.parts):
        raise InvalidInput(f"zip entry {info.filename!r} points outside the archive ('..')")
    mode = (info.external_attr >> 16) & 0o170000
    if mode == stat.S_IFLNK:
        raise InvalidInput(f"zip entry {info.filename!r} is a symbolic link")
    return path


class DatasetStore:
    def __init__(self, settings: AdminSettings):
        self.settings = settings
        self.root = settings.datasets_dir
        clean_stale_staging(self.root)  # what an upload left when its runner was killed mid-write

    # ---- read --------------------------------------------------------------------------------------
    def list(self) -> list[DatasetInfo]:
        if not self.root.is_dir():
            return []
        out = []
        for d in sorted(self.root.iterdir()):
            if (d / "dataset.json").is_file():
                out.append(self._read(d))
        return out

    def get(self, dataset_id: str) -> DatasetInfo:
        if not re.match(r"^[A-Za-z0-9_-]{1,80}$", dataset_id):
            raise NotFound(f"no dataset {dataset_id!r}")
        d = self.root / dataset_id
        if not (d / "dataset.json").is_file():
            raise NotFound(f"no dataset {dataset_id!r}")
        return self._read(d)

    def images_dir(self, dataset_id: str) -> Path:
        self.get(dataset_id)
        return self.root / dataset_id / "images"

    @staticmethod
    def _read(d: Path) -> DatasetInfo:
        return DatasetInfo(**json.loads((d / "dataset.json").read_text()))

    # ---- write -------------------------------------------------------------------------------------
    def ingest_zip(self, data: bytes) -> DatasetInfo:
        """A zip of class folders (``cat/1.jpg``, ``dog/2.png``; one wrapping folder is allowed)."""
        if len(data) > self.settings.max_upload_bytes:
            raise PayloadTooLarge(f"upload is {len(data)} bytes; the limit is {self.settings.max_upload_bytes}")
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except zipfile.BadZipFile:
            raise InvalidInput("the upload is not a valid zip archive") from None
        with archive:
            members = self._check_members(archive)
            files: list[tuple[str, str, bytes]] = []
            for info, path in members:
                label = check_label(path.parts[0])
                with archive.open(info) as fh:
                    content = fh.read(info.file_size + 1)
                if len(content) != info.file_size:
                    raise InvalidInput(f"zip entry {info.filename!r} does not match its declared size")
                files.append((label, path.name, content))
        return self._build(files, source="zip")

    def ingest_images(self, images: list[tuple[str, bytes]], label: str, base: str | None = None) -> DatasetInfo:
        """Images of one class, added to a copy of dataset ``base`` (or forming a new one with it)."""
        label = check_label(label)
        if not images:
            raise InvalidInput("no images uploaded")
        total = sum(len(b) for _, b in images)
        if total > self.settings.max_upload_bytes:
            raise PayloadTooLarge(f"upload is {total} bytes; the limit is {self.settings.max_upload_bytes}")
        files: list[tuple[str, str, bytes]] = []
        if base:
            base_dir = self.images_dir(base)
            for cls_dir in sorted(p for p in base_dir.iterdir() if p.is_dir()):
                for f in sorted(cls_dir.iterdir()):
                    files.append((cls_dir.name, f.name, f.read_bytes()))
        for name, content in images:
            files.append((label, PurePosixPath(name.replace("\\", "/")).name or "image", content))
        return self._build(files, source="images", base=base)

    def _check_members(self, archive: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
        infos = archive.infolist()
        if len(infos) > self.settings.max_zip_entries:
            raise InvalidInput(f"the zip has {len(infos)} entries; the limit is {self.settings.max_zip_entries}")
        total = 0
        kept: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
        for info in infos:
            path = _safe_member_path(info)
            if info.is_dir() or any(part in info.filename for part in _IGNORED):
                continue
            if path.name.startswith("."):
                continue
            if info.file_size > 1024 * 1024 and info.file_size > self.settings.max_compression_ratio * max(1, info.compress_size):
                raise InvalidInput(
                    f"zip entry {info.filename!r} expands {info.file_size // max(1, info.compress_size)}x; "
                    f"the limit is {self.settings.max_compression_ratio:.0f}x (zip bomb?)"
                )
            total += info.file_size
            if total > self.settings.max_uncompressed_bytes:
                raise InvalidInput(
                    f"the zip expands to more than {self.settings.max_uncompressed_bytes} bytes (zip bomb?)"
                )
            kept.append((info, path))
        if not kept:
            raise InvalidInput("the zip holds no files")
        # Allow one wrapping folder: root/<class>/<file>.
        roots = {p.parts[0] for _, p in kept}
        if len(roots) == 1 and all(len(p.parts) == 3 for _, p in kept):
            kept = [(i, PurePosixPath(*p.parts[1:])) for i, p in kept]
        for info, path in kept:
            if len(path.parts) != 2:
                raise InvalidInput(
                    f"zip entry {info.filename!r} is not of the form <class>/<image>; "
                    "upload a zip of class folders"
                )
        return kept

    def _build(self, files: list[tuple[str, str, bytes]], *, source: str, base: str | None = None) -> DatasetInfo:
        counts: dict[str, int] = {}
        digest = hashlib.sha256()
        for label, name, content in sorted(files, key=lambda f: (f[0], f[1])):
            if PurePosixPath(name).suffix.lower() not in IMAGE_SUFFIXES:
                raise InvalidInput(
                    f"{label}/{name} is not an image file (allowed: {', '.join(sorted(IMAGE_SUFFIXES))})"
                )
            try:
                decode_image(content)
            except InvalidInput as exc:
                raise InvalidInput(f"{label}/{name}: {exc.message}") from None
            counts[label] = counts.get(label, 0) + 1
            digest.update(label.encode() + b"\0" + hashlib.sha256(content).digest())
        if len(counts) < 2:
            raise InvalidInput(f"a dataset needs at least 2 classes; found {len(counts)} ({', '.join(counts) or 'none'})")
        few = {k: v for k, v in counts.items() if v < self.settings.max_images_per_class_min}
        if few:
            raise InvalidInput(f"classes with too few images: {few}")
        fingerprint = digest.hexdigest()
        dataset_id = utc_now().replace("-", "").replace(":", "").replace("Z", "") + "-" + fingerprint[:8]
        final = self.root / dataset_id
        if final.exists():
            return self._read(final)  # identical content uploaded in the same second
        with staging_dir(self.root) as tmp:
            used: set[tuple[str, str]] = set()
            for label, name, content in files:
                stem, suffix = os.path.splitext(name)
                candidate, n = name, 1
                while (label, candidate) in used:
                    candidate, n = f"{stem}_{n}{suffix}", n + 1
                used.add((label, candidate))
                target = tmp / "images" / label / candidate
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
            info = DatasetInfo(
                id=dataset_id,
                created_at=utc_now(),
                classes=dict(sorted(counts.items())),
                num_images=sum(counts.values()),
                fingerprint=fingerprint,
                source=source,
                base=base,
            )
            atomic_write_json(tmp / "dataset.json", info.to_dict())
            try:
                publish_dir(tmp, final)  # fsynced before and after the rename, like registry versions
            except OSError:  # uploads are ingested in threads: the same content may have just landed
                if not (final / "dataset.json").is_file():
                    raise
                return self._read(final)
        return info
