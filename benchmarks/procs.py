"""Server subprocesses that always go away: each starts in a new session, and stopping it sends SIGTERM to
its process group, waits, then SIGKILLs every process of that session and every descendant seen (Ray's
actors and MLServer's workers set their own process groups, but stay in the session). ``stop_all`` runs at
exit and on SIGTERM/SIGINT, so an interrupted benchmark leaves nothing behind."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_LIVE: dict[int, ServerProcess] = {}


class ServerFailed(Exception):
    """The server exited or never became ready; the message carries the end of its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerSpec:
    name: str
    argv: list[str]
    ready_url: str
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    ready_timeout_s: float = 120.0
    cpus: list[int] | None = None  # pin the server's processes to these CPUs (sched_setaffinity)


def _session_members(sid: int) -> list[int]:
    """PIDs whose session id is ``sid`` (field 6 of /proc/PID/stat)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 3 and int(fields[3]) == sid:
            pids.append(int(entry))
    return pids


class ServerProcess:
    def __init__(self, spec: ServerSpec, log_path: Path):
        self.spec = spec
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.ready_s: float | None = None

    # ---- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.spec.env}
        cpus = self.spec.cpus

        def preexec() -> None:  # runs in the child, after the fork
            if cpus:
                os.sched_setaffinity(0, cpus)

        with open(self.log_path, "ab") as logf:
            logf.write(f"$ {' '.join(self.spec.argv)}\n".encode())
            logf.flush()
            self.proc = subprocess.Popen(
                self.spec.argv, cwd=self.spec.cwd, env=env, stdout=logf, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=preexec if cpus else None,
            )
        self.started_at = time.monotonic()
        _LIVE[self.proc.pid] = self
        log.info("started %s (pid %d): %s", self.spec.name, self.proc.pid, " ".join(self.spec.argv))

    def wait_ready(self) -> float:
        """Poll ``ready_url`` until it answers 200; seconds from start. Fails fast if the process exits."""
        assert self.proc is not None
        deadline = self.started_at + self.spec.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerFailed(f"{self.spec.name} exited with status {self.proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.spec.ready_url, timeout=2) as resp:  # noqa: S310 - loopback
                    if resp.status == 200:
                        self.ready_s = time.monotonic() - self.started_at
                        return self.ready_s
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.25)
        raise ServerFailed(f"{self.spec.name} not ready after {self.spec.ready_timeout_s:.0f}s: {self.log_tail()}")

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None and self.proc.poll() is None else []

    def pause(self) -> None:
        """SIGSTOP every process of the server (its tree and session). The suite pauses the servers it is not
        measuring: an idle server is not always idle (LitServe's workers poll their queues: ~0.47 cores of 2
        with no request at all), and that CPU would be taken from the one being measured."""
        self._signal_all(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_all(signal.SIGCONT)

    def _signal_all(self, sig: signal.Signals) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        for p in {self.proc.pid, *_descendants(self.proc.pid)} - {os.getpid()}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, sig)

    def stop(self, grace_s: float = 10.0) -> None:
        if self.proc is None:
            return
        self.resume()  # a paused process would not act on SIGTERM until continued
        pid = self.proc.pid
        seen = _descendants(pid)  # pid -> start time, so a recycled pid is never mistaken for ours
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        # What is left of the session (Ray actors, MLServer workers: own process groups) gets SIGTERM, a
        # short grace, then SIGKILL; so does any descendant seen at the start that moved out of the session.
        def leftovers() -> set[int]:
            ours = set(_session_members(pid)) | {p for p, t in seen.items() if _start_time(p) == t}
            return {p for p in ours - {os.getpid()} if _alive(p)}

        for sig, wait_s in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
            left = leftovers()
            if not left:
                break
            for p in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(p, sig)
            deadline = time.monotonic() + wait_s
            while leftovers() and time.monotonic() < deadline:
                time.sleep(0.1)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait(timeout=5)
        _LIVE.pop(pid, None)
        log.info("stopped %s (pid %d)", self.spec.name, pid)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(line.strip()[:300] for line in text[-lines:])


def _start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (clock ticks since boot): with the pid, identifies a process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
        return int(stat[stat.rfind(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _descendants(pid: int) -> dict[int, int]:
    """Every live descendant of ``pid`` (and members of its session), with start times."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, stack = set(), [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    found.update(_session_members(pid))
    return {p: t for p in found if (t := _start_time(p)) is not None}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().decode(errors="replace")
        return state[state.rfind(")") + 2 :].split()[0] != "Z"
    except OSError:
        return False


@contextlib.contextmanager
def running(spec: ServerSpec, log_path: Path) -> Iterator[ServerProcess]:
    """Start ``spec``, wait until ready, yield, and stop it whatever happens."""
    server = ServerProcess(spec, log_path)
    try:
        server.start()
        server.wait_ready()
        yield server
    finally:
        server.stop()


def stop_all() -> None:
    for server in list(_LIVE.values()):
        with contextlib.suppress(Exception):
            server.stop(grace_s=3.0)


@contextlib.contextmanager
def cleanup_on_exit() -> Iterator[None]:
    """While active: every server is stopped on SIGTERM/SIGINT (re-raised as SystemExit/KeyboardInterrupt)
    and at interpreter exit; the previous signal handlers come back afterwards."""
    atexit.register(stop_all)

    def handler(signum: int, frame: Any) -> None:
        stop_all()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(ValueError):  # not the main thread
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        stop_all()
        for sig, old in previous.items():
            signal.signal(sig, old)
        atexit.unregister(stop_all)
