"""Each replica's local copy of immutable versions from object storage: downloaded once, checked against the
version's manifest (size + SHA-256) before every use, downloaded again if the copy on disk went bad."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
from collections.abc import Callable
from pathlib import Path

from ..errors import RegistryError
from .manifest import Manifest

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$IMGSERVE_CACHE_DIR``, else ``$XDG_CACHE_HOME/imgserve``, else ``~/.cache/imgserve``."""
    explicit = os.environ.get("IMGSERVE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imgserve"


def safe_name(name: str) -> str:
    """A manifest entry as a relative path that stays inside its version folder."""
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise RegistryError(f"refusing the file name {name!r} from the store's manifest")
    return name


class VersionCache:
    def __init__(self, root: Path):
        self.root = Path(root)
        self._verified: dict[Path, tuple[int, int, int]] = {}  # path -> (inode, size, mtime) when last hashed
        self._lock = threading.Lock()

    def _still_verified(self, path: Path) -> bool:
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        with self._lock:
            return self._verified.get(path) == (st.st_ino, st.st_size, st.st_mtime_ns)

    def _remember(self, path: Path) -> None:
        st = path.stat()
        with self._lock:
            self._verified[path] = (st.st_ino, st.st_size, st.st_mtime_ns)

    def fetch(self, path: Path, name: str, manifest: Manifest, download: Callable[[Path], None], what: str) -> Path:
        """``path`` holding a verified copy of ``name``; ``download(dest)`` fetches it from the store."""
        if self._still_verified(path):
            return path
        problem = manifest.problem(name, path) if path.exists() else "not cached"
        if problem is None:
            self._remember(path)
            return path
        if path.exists():
            log.warning("cached copy of %s is bad (%s): downloading it again", what, problem)
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
        try:
            download(part)
            problem = manifest.problem(name, part)
            if problem:
                raise RegistryError(f"{what} in the store does not match its manifest: {problem}")
            os.replace(part, path)  # several workers may race here: each puts the same verified bytes
        finally:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
        self._remember(path)
        return path
