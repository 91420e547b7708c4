"""Atomic file-system writes: a reader sees the old content or the new, never a half-written file or directory."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same directory and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; readers (a service running as another user) need the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


STAGING_PREFIX = ".staging-"
STALE_UNLOCKED_S = 600.0  # a staging folder without its lock file (older code, or a crash between the two) is stale after this


def fsync_tree(root: Path) -> None:
    """fsync every file, then every directory bottom-up: after this, a power loss cannot leave any of them
    empty or missing once a rename has made ``root`` visible (ext4/xfs order data and rename only this way)."""
    for dirpath, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def publish_dir(staged: Path, final: Path) -> Path:
    """Make a fully written ``staged`` directory visible as ``final`` in one step, durably: contents are
    fsynced before the rename, the parent directory after it. ``final`` must not exist."""
    fsync_tree(staged)
    os.rename(staged, final)
    _fsync_dir(final.parent)
    return final


@contextlib.contextmanager
def staging_dir(parent: str | os.PathLike[str], prefix: str = STAGING_PREFIX) -> Iterator[Path]:
    """Yield a fresh temp directory under ``parent``; it is removed if the block raises.

    The caller renames it into place (:func:`publish_dir`) when complete, so the final directory appears
    whole or not at all. While the block runs, this process holds an ``flock`` on ``<dir>.lock`` beside it:
    the kernel drops that lock when the process dies (even by kill -9), which is how
    :func:`clean_stale_staging` tells a dead writer's leftovers from a live writer's work in progress.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    name = f"{prefix}{os.getpid()}-{secrets.token_hex(6)}"
    lock_path = parent / f"{name}.lock"
    lock = open(lock_path, "x")  # noqa: SIM115 - held for the whole block
    fcntl.flock(lock, fcntl.LOCK_EX)
    tmp = parent / name
    try:
        tmp.mkdir()  # 0777 less the umask: the renamed directory must be readable like any other
        yield tmp
    finally:
        # If the caller renamed it, tmp no longer exists; if it did not (error or not published), clean up.
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            lock_path.unlink()
        lock.close()


def _remove_if_unlocked(lock_path: Path) -> None:
    """An orphan lock file, once it is a minute old (a writer holds its lock microseconds after creating it;
    removing it in between would leave that writer's folder looking lock-less)."""
    with contextlib.suppress(FileNotFoundError):
        if time.time() - lock_path.stat().st_mtime < 60:
            return
    with contextlib.suppress(FileNotFoundError), open(lock_path) as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        lock_path.unlink()


def clean_stale_staging(parent: str | os.PathLike[str], prefix: str = STAGING_PREFIX) -> list[Path]:
    """Remove staging folders under ``parent`` whose writer is gone (its lock is free) and return them.

    A live writer, in this process or another on this machine, holds its lock and is left alone however long
    it takes; a folder with no lock file at all is removed only once it is older than ``STALE_UNLOCKED_S``."""
    parent = Path(parent)
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for entry in sorted(parent.iterdir()):
        if entry.name.startswith(prefix) and entry.name.endswith(".lock") and not entry.with_suffix("").exists():
            _remove_if_unlocked(entry)  # a writer died between creating its lock and its folder
            continue
        if not entry.name.startswith(prefix) or entry.name.endswith(".lock") or not entry.is_dir():
            continue
        lock_path = entry.parent / f"{entry.name}.lock"
        try:
            lock = open(lock_path)  # noqa: SIM115
        except FileNotFoundError:
            with contextlib.suppress(FileNotFoundError):
                if time.time() - entry.stat().st_mtime > STALE_UNLOCKED_S:
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(entry)
            continue
        with lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its writer is alive
            shutil.rmtree(entry, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                lock_path.unlink()
            removed.append(entry)
    return removed
