"""Where the registry's bytes live: a local folder or ``s3://bucket/prefix``, behind one small interface
(:class:`Storage`, see ``base.py``). Only ``inference/registry.py`` talks to it."""

from __future__ import annotations

import os
from pathlib import Path

from .base import Blob, Storage, version_key
from .cache import default_cache_dir
from .manifest import MANIFEST_FILE, Manifest

REMOTE_SCHEMES = ("s3://",)


def is_remote(root: str | os.PathLike[str]) -> bool:
    return str(root).startswith(REMOTE_SCHEMES)


def normalize_root(root: str | os.PathLike[str]) -> str:
    """An absolute path for a local registry (a subprocess may run elsewhere), the URL unchanged otherwise."""
    return str(root) if is_remote(root) else str(Path(root).resolve())


def path_to_str(value: object) -> object:
    """For settings fields that hold a registry root: a ``Path`` given in code becomes its string (a
    ``Path`` field would turn ``s3://b/p`` into ``s3:/b/p``)."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def open_storage(root: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> Storage:
    if is_remote(root):
        from .s3 import S3Storage

        return S3Storage(str(root), Path(cache_dir) if cache_dir else default_cache_dir())
    from .local import LocalStorage

    return LocalStorage(Path(root))


__all__ = [
    "MANIFEST_FILE", "Blob", "Manifest", "Storage", "default_cache_dir", "is_remote", "normalize_root",
    "open_storage", "path_to_str", "version_key",
]
