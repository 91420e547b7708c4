"""The folders a run writes and the files it reads, with what goes wrong said in one line instead of a
traceback: a ``--out`` or work directory that cannot be created, and a damaged file a run or a warm start
depends on (model.keras, heldout.npz truncated by a full disk, overwritten, half-copied)."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from inference.errors import ConfigError

T = TypeVar("T")


def read_or_explain(path: Path, read: Callable[[Path], T], remedy: str = "train it again") -> T:
    """``read(path)``; a file that cannot be read raises one ``ConfigError`` naming it, its folder and ``remedy``."""
    try:
        return read(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ConfigError(
            f"{path.parent}: {path.name} cannot be read ({type(exc).__name__}: {exc}); {remedy}"
        ) from None


def explain_os_error(exc: OSError, path: Path, what: str) -> ConfigError:
    """``exc`` from creating or writing under ``path`` (``what``: "the run directory"), as one line that names
    the culprit: ``path`` itself, a file where one of its folders should be, or another file it needed."""
    failed = Path(exc.filename) if exc.filename else path
    blocker = next((p for p in (failed, *failed.parents) if p.is_file()), None)
    ours = failed == path or path in failed.parents or (blocker is not None and blocker in path.parents)
    name, subject = (f"{what} {path}", path) if ours else (str(failed), failed)
    if blocker is None:
        return ConfigError(f"cannot write {name}: {exc.strerror}")
    return ConfigError(f"cannot write {name}: {'it' if blocker == subject else blocker} is a file")


def make_dir(path: Path, what: str) -> Path:
    """``path`` created (with its parents) if needed; one line when that is impossible."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise explain_os_error(exc, path, what) from None
    return path
