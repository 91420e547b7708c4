"""A version's manifest: every file with its size and SHA-256, written last.

On object storage the manifest is what makes a version exist (it is uploaded after every other file, with a
create-only write), and what a replica checks its cached copy against before loading it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import RegistryError

MANIFEST_FILE = "manifest.json"
CLAIM_FILE = ".claim"  # object storage: reserves a version number before anything else is uploaded
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class FileEntry:
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    files: dict[str, FileEntry]

    @classmethod
    def of_dir(cls, folder: Path) -> Manifest:
        """Describe every file under ``folder`` (relative POSIX names), except the manifest and claim."""
        files = {}
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            rel = path.relative_to(folder).as_posix()
            if rel not in (MANIFEST_FILE, CLAIM_FILE):
                files[rel] = FileEntry(path.stat().st_size, sha256_file(path))
        return cls(files)

    def to_bytes(self) -> bytes:
        body = {"files": {k: {"size": e.size, "sha256": e.sha256} for k, e in sorted(self.files.items())}}
        return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        try:
            raw = json.loads(data)["files"]
            return cls({str(k): FileEntry(int(v["size"]), str(v["sha256"])) for k, v in raw.items()})
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryError(f"invalid version manifest: {exc}") from exc

    def problem(self, name: str, path: Path) -> str | None:
        """Why the file at ``path`` is not this manifest's ``name`` (None when it is)."""
        entry = self.files.get(name)
        if entry is None:
            return f"{name} is not in the manifest"
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return f"{name} is missing"
        if size != entry.size:
            return f"{name} has {size} bytes, the manifest says {entry.size}"
        if sha256_file(path) != entry.sha256:
            return f"{name} does not match its SHA-256 in the manifest"
        return None
