"""The registry in a local folder (or a shared file system): fsynced rename for versions, flock for writers."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
from collections.abc import Iterator
from pathlib import Path

from ..atomic import atomic_write_bytes, publish_dir
from ..errors import ConfigError, Conflict
from .base import Blob, Finalize, Storage

METADATA_FILE = "metadata.json"  # a local version is visible when its renamed folder holds this (older ones have no manifest)


def _content_tag(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


class LocalStorage(Storage):
    def __init__(self, root: Path):
        self.root = Path(root)
        self.url = str(self.root)
        if self.root.exists() and not self.root.is_dir():  # else every call fails with NotADirectoryError
            raise ConfigError(f"the registry {self.root} is a file, not a folder")

    # ---- small documents -------------------------------------------------------------------------
    def get(self, key: str) -> Blob | None:
        try:
            data = (self.root / key).read_bytes()
        except FileNotFoundError:
            return None
        return Blob(data, _content_tag(data))

    def tag(self, key: str) -> str | None:
        blob = self.get(key)  # aliases.json is a few KB: hashing it is cheaper than any stat-based tag's doubts
        return blob.tag if blob else None

    def swap(self, key: str, data: bytes, expected_tag: str | None) -> None:
        path = self.root / key
        with self._locked(path.parent):
            if self.tag(key) != expected_tag:
                raise Conflict(f"{key} changed since it was read")
            atomic_write_bytes(path, data)

    @contextlib.contextmanager
    def _locked(self, folder: Path) -> Iterator[None]:
        """One writer at a time per model folder, across threads and processes of this machine."""
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # ---- models and versions ---------------------------------------------------------------------
    def models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "versions").is_dir())

    def _vdir(self, model: str, version: int) -> Path:
        return self.root / model / "versions" / str(int(version))

    def versions(self, model: str) -> list[int]:
        vdir = self.root / model / "versions"
        if not vdir.is_dir():
            return []
        return sorted(int(p.name) for p in vdir.iterdir() if p.name.isdigit() and (p / METADATA_FILE).is_file())

    def has_version(self, model: str, version: int) -> bool:
        return (self._vdir(model, version) / METADATA_FILE).is_file()

    def files(self, model: str, version: int) -> list[str]:
        vdir = self._vdir(model, version)
        return sorted(p.relative_to(vdir).as_posix() for p in vdir.rglob("*") if p.is_file())

    def local_file(self, model: str, version: int, name: str) -> Path | None:
        path = self._vdir(model, version) / name
        return path if path.is_file() else None

    def staging_parent(self, model: str) -> Path:
        return self.root / model / "versions"

    def publish(self, model: str, staged: Path, finalize: Finalize, version: int | None = None) -> int:
        with self._locked(self.root / model):
            if version is None:
                taken = [int(p.name) for p in staged.parent.iterdir() if p.name.isdigit()]  # leftovers too: never reuse
                version = max(taken, default=0) + 1
            elif self._vdir(model, version).exists():
                raise Conflict(f"model {model!r} already has a version {version}")
            finalize(version, staged)
            publish_dir(staged, self._vdir(model, version))
        return version
