"""The interface every registry backend gives, and the key layout they share.

Keys are ``/``-separated and relative to the registry root: ``<model>/aliases.json``,
``<model>/versions/<N>/<file>``. Three guarantees, whatever the backend:

* a version appears whole or not at all (local: rename of a fsynced folder; S3: manifest uploaded last);
* a version number is taken once and never overwritten (local: lock + rename; S3: create-only writes);
* a small document (``aliases.json``) changes only if nobody changed it since it was read
  (:meth:`Storage.swap`, compare-and-swap on a content tag; S3: ``If-Match`` on the ETag).
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

# finalize(version, staged): write what depends on the allocated number (metadata.json) and the manifest
Finalize = Callable[[int, Path], None]


@dataclass(frozen=True)
class Blob:
    data: bytes
    tag: str  # changes whenever the content does (S3 ETag; a content hash locally)


def version_key(model: str, version: int, name: str = "") -> str:
    return f"{model}/versions/{int(version)}/{name}"


class Storage(abc.ABC):
    """A registry root. ``url`` is how users name it (a path or ``s3://bucket/prefix``)."""

    url: str

    # ---- small documents -------------------------------------------------------------------------
    @abc.abstractmethod
    def get(self, key: str) -> Blob | None:
        """The document and its tag, or None when it does not exist."""

    @abc.abstractmethod
    def tag(self, key: str) -> str | None:
        """Just the tag (a HEAD on S3): what a replica polls to notice an alias change."""

    @abc.abstractmethod
    def swap(self, key: str, data: bytes, expected_tag: str | None) -> None:
        """Write ``data`` only if the current tag is ``expected_tag`` (None: only if the key does not exist);
        otherwise raise :class:`inference.errors.Conflict` and write nothing."""

    # ---- models and versions ---------------------------------------------------------------------
    @abc.abstractmethod
    def models(self) -> list[str]:
        """Names of the folders at the root that hold versions."""

    @abc.abstractmethod
    def versions(self, model: str) -> list[int]:
        """Complete (visible) versions, ascending."""

    @abc.abstractmethod
    def has_version(self, model: str, version: int) -> bool: ...

    @abc.abstractmethod
    def files(self, model: str, version: int) -> list[str]:
        """The names of a visible version's files."""

    @abc.abstractmethod
    def local_file(self, model: str, version: int, name: str) -> Path | None:
        """A local path holding that file (S3: a verified copy in the cache), or None if the version has
        no such file."""

    @abc.abstractmethod
    def staging_parent(self, model: str) -> Path:
        """The local folder new versions of ``model`` are built in."""

    @abc.abstractmethod
    def publish(self, model: str, staged: Path, finalize: Finalize, version: int | None = None) -> int:
        """Make ``staged`` a new version: the next free number (or exactly ``version``, else Conflict).
        ``finalize`` runs once the number is known and before anything becomes visible."""

    @contextlib.contextmanager
    def stage(self, model: str) -> Iterator[Path]:
        """A fresh local folder to build a version in (removed afterwards unless published); stale
        folders left by dead writers are cleaned first."""
        from ..atomic import clean_stale_staging, staging_dir

        parent = self.staging_parent(model)
        clean_stale_staging(parent)
        with staging_dir(parent) as tmp:
            yield tmp
