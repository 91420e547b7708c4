"""Stopping the servers the e2e tests start, with nothing left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def stop(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM the server's process group (it was started with ``start_new_session``), SIGKILL it after
    ``grace_s``, then every descendant seen before the signal: BentoML starts each worker in a session of its
    own, so a worker whose arbiter died first is in no group of ours and would go on serving (and holding its
    port) after the test."""
    if proc.poll() is not None:
        return
    import psutil

    descendants: list[psutil.Process] = []
    with contextlib.suppress(psutil.NoSuchProcess):
        descendants = psutil.Process(proc.pid).children(recursive=True)
    pgid = proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        proc.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)  # workers may outlive the arbiter by a moment
    for child in descendants:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
