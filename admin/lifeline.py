"""A retraining job lives only as long as its admin runner; a restarted runner records what the job left.

Why "die with the runner" rather than "adopt the orphan": an orphaned job has nobody to cancel it, to wait
for its exit status or to tell the inference service about a promotion, and a restarted runner could only
recognise it by pid (which the kernel reuses) and follow it by polling files. A dead runner's job is
killed by the kernel instead (``PR_SET_PDEATHSIG``: SIGKILL when the parent dies, even by ``kill -9``),
so nothing changes the registry while no runner watches. The registry only changes in a job's last steps
(an atomic version rename, then an atomic alias write), so a job killed mid-training leaves it unchanged.

On restart, :func:`interrupted` turns each job still marked ``running`` into the truth: ``succeeded`` with
its result if it had finished (result.json written) before the runner died, else ``failed`` with what the
registry shows compared with the snapshot taken when the job started (a candidate registered in the
seconds between export and the end of the job is named, never hidden).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inference.errors import ImgServeError
from inference.registry import Registry, utc_now

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` for the job: SIGKILL it when the runner dies. ``None`` where Linux's prctl is missing.

    The kernel tracks the *thread* that forked: the runner spawns jobs from its event-loop thread, which
    lives as long as the process. The ``getppid`` check closes the race of a runner dying before prctl."""
    if _LIBC is None:
        return None
    parent = os.getpid()

    def _preexec() -> None:  # runs in the child between fork and exec: no imports, no allocation-heavy work
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(70)

    return _preexec


def registry_snapshot(registry: Registry, name: str) -> dict[str, Any]:
    """The newest version and the production alias of ``name``: what a job may change."""
    try:
        versions = registry.list_versions(name)
        production = registry.aliases(name).get("production")
    except ImgServeError as exc:
        return {"error": exc.message}
    return {"latest": versions[-1] if versions else None, "production": production}


def interrupted(job: dict[str, Any], job_dir: Path, registry: Registry) -> dict[str, Any]:
    """The record of a job that was ``running`` when its runner died (see the module docstring)."""
    _kill_leftover(job.get("pid"), job_dir)
    job["finished_at"] = utc_now()
    result = _read_result(job_dir / "result.json")
    if result is not None:
        job.update(state="succeeded", result=result, error=None,
                   note="the job finished while the admin runner was down; recorded when it restarted")
        return job
    before = job.get("registry_before") or {}
    model = (job.get("params") or {}).get("model")
    after = registry_snapshot(registry, model) if model else {"error": "no model recorded"}
    job.update(state="failed", registry_after=after,
               error="interrupted: the admin runner stopped while the job ran, and the job was stopped with it; "
               + _changes(before, after))
    return job


def _changes(before: dict[str, Any], after: dict[str, Any]) -> str:
    if not before or "error" in before or "error" in after:
        return "the registry state before the job is unknown"
    if before == after:
        return "the registry is unchanged"
    parts = []
    if after.get("latest") != before.get("latest"):
        first, last = (before.get("latest") or 0) + 1, after.get("latest")
        parts.append(f"version {last} was registered" if first == last else f"versions {first}-{last} were registered")
    if after.get("production") != before.get("production"):
        parts.append(f"production moved from {before.get('production')} to {after.get('production')}")
    return "while it ran " + " and ".join(parts)


def _read_result(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _kill_leftover(pid: Any, job_dir: Path, wait_s: float = 5.0) -> None:
    """Belt and braces for a job that outlived its runner (no prctl, or the kernel not done yet): kill its
    process group, but only if ``/proc`` shows it is this job's process (pids are reused)."""
    if not isinstance(pid, int) or not _is_job_process(pid, job_dir):
        return
    log.warning("job process %d outlived its runner; killing it", pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and _is_job_process(pid, job_dir):
        time.sleep(0.05)


def _is_job_process(pid: int, job_dir: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X") and str(job_dir.resolve()).encode() in cmdline
