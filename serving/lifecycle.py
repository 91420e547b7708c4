"""SIGTERM the way an orchestrator means it: stop being ready, answer what was sent, close cleanly, exit.

What BentoML 1.4 does by itself (read in its source, measured with 32 keep-alive clients): ``bentoml serve``
is a circus arbiter that owns the listening socket and hands it to uvicorn worker processes. On SIGTERM it
sends SIGTERM to every worker and waits for them (``graceful_timeout`` 24 h), then closes the socket. A
uvicorn worker, on SIGTERM, at once stops accepting, closes every idle keep-alive connection, lets in-flight
requests finish and exits. That dropped 64 of 308 requests (51 resets, 13 broken pipes) even from clients
that stop opening connections once ``/readyz`` says no: ``/readyz`` stayed 200 until the worker was gone;
idle keep-alive connections were closed under clients that were sending on them; and connections reaching
the arbiter's socket after the workers stopped accepting waited in its backlog, then were reset.

What a worker does instead (:class:`Drain`, installed by the service's startup hook):

1. **Drain.** SIGTERM makes the worker *draining*: ``/readyz`` answers 503 and gRPC health NOT_SERVING at
   once, but the worker keeps accepting and answering, and every HTTP response carries ``Connection: close``
   (:class:`CloseWhenDraining`), so each keep-alive client learns at a response boundary that its connection
   ends, and reconnects -- to another replica once its balancer has seen the 503.
2. **Close.** Once no HTTP connection has been open for ``QUIET_S`` (the balancers went elsewhere), or at the
   latest ``drain_s - finish_s`` after SIGTERM, the worker hands the SIGTERM to uvicorn: it stops accepting,
   closes what is idle, gives in-flight requests ``finish_s`` (its ``timeout_graceful_shutdown``) while the
   gRPC server stops with the same grace, then runs the shutdown hooks. The process exits within
   ``drain_s`` (``IMGSERVE_DRAIN_S``) of the SIGTERM.

A second SIGTERM changes nothing (``bentoml serve`` forwards the one it gets, and process-group kills send
another); SIGINT keeps uvicorn's meaning (Ctrl+C: stop now).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

QUIET_S = 1.0  # no connection open this long: the balancers have stopped sending here
FINISH_MAX_S = 5.0  # the most that in-flight requests get once the worker stops accepting


class Drain:
    """One worker's SIGTERM handling. Created at import (cheap, no side effects); :meth:`install` runs on the
    worker's event loop, after uvicorn has installed its signal handlers (a startup hook)."""

    def __init__(self, drain_s: float):
        self.drain_s = float(drain_s)
        self.finish_s = min(FINISH_MAX_S, self.drain_s / 3)
        self.draining = False
        self.started_at: float | None = None  # monotonic time of the SIGTERM
        self._server: Any = None  # the worker's uvicorn.Server
        self._uvicorn_handler: Callable[[int, Any], None] | None = None
        self._on_drain: list[Callable[[], None]] = []
        self._on_close: list[Callable[[float], Awaitable[None]]] = []
        self._closing: list[asyncio.Task[None]] = []
        self._task: asyncio.Task[None] | None = None

    def on_drain(self, callback: Callable[[], None]) -> None:
        """``callback()`` when draining starts (e.g. gRPC health to NOT_SERVING)."""
        self._on_drain.append(callback)

    def on_close(self, callback: Callable[[float], Awaitable[None]]) -> None:
        """``await callback(grace_s)`` when the worker stops accepting (e.g. stop the gRPC server)."""
        self._on_close.append(callback)

    def install(self) -> bool:
        """Take SIGTERM over from this process's uvicorn server (found as the owner of the SIGTERM handler
        uvicorn installed). Returns False, and leaves uvicorn's handling alone, anywhere else."""
        if threading.current_thread() is not threading.main_thread():
            return False
        handler = signal.getsignal(signal.SIGTERM)
        server = getattr(handler, "__self__", None)
        if server is None or not hasattr(server, "server_state") or not hasattr(server, "config"):
            log.warning("SIGTERM drain not installed: SIGTERM is handled by %r, not by a uvicorn server", handler)
            return False
        self._server, self._uvicorn_handler = server, handler
        loop = asyncio.get_running_loop()
        signal.signal(signal.SIGTERM, lambda signum, frame: loop.call_soon_threadsafe(self.start))
        return True

    def start(self) -> None:
        """Begin draining (on the event loop). Idempotent."""
        if self.draining:
            return
        self.draining, self.started_at = True, time.monotonic()
        log.warning(
            "SIGTERM: draining: not ready, still answering (with Connection: close); exit within %.0f s", self.drain_s
        )
        for callback in self._on_drain:
            try:
                callback()
            except Exception:
                log.exception("drain callback failed")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="drain")

    def open_connections(self) -> int:
        return len(self._server.server_state.connections) if self._server is not None else 0

    async def _run(self) -> None:
        assert self.started_at is not None
        stop_accepting_at = self.started_at + max(0.0, self.drain_s - self.finish_s)
        quiet_since: float | None = None
        while (now := time.monotonic()) < stop_accepting_at:
            if self.open_connections():
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= QUIET_S:
                break
            await asyncio.sleep(0.05)
        grace = max(0.5, self.started_at + self.drain_s - time.monotonic())
        log.info(
            "drain: stop accepting after %.1f s, %d connection(s) open; in-flight work gets %.1f s",
            time.monotonic() - self.started_at, self.open_connections(), grace,
        )
        for callback in self._on_close:
            self._closing.append(asyncio.get_running_loop().create_task(callback(grace)))
        self._server.config.timeout_graceful_shutdown = grace
        assert self._uvicorn_handler is not None
        self._uvicorn_handler(signal.SIGTERM, None)  # uvicorn's own graceful shutdown from here on

    async def wait_closed(self) -> bool:
        """Wait for the :meth:`on_close` callbacks started by the drain; False if no drain ran."""
        if not self._closing:
            return False
        await asyncio.gather(*self._closing, return_exceptions=True)
        return True


class CloseWhenDraining:
    """ASGI middleware: while the worker drains, every HTTP response says ``Connection: close`` (uvicorn then
    closes the connection after it), so no keep-alive client is left holding a connection the server is about
    to close. Checked when the response starts, so requests that began before the SIGTERM get it too."""

    def __init__(self, app: Any, drain: Drain):
        self.app, self.drain = app, drain

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        drain = self.drain

        async def send_closing(message: dict[str, Any]) -> None:
            if drain.draining and message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)


def forget_dead_workers() -> list[int]:
    """Remove the multiprocess metric files of worker processes that no longer exist; returns their pids.

    A worker that exits cleanly marks itself dead (BentoML calls ``mark_process_dead``), but one killed with
    ``kill -9`` (or by the OOM killer) cannot: its ``live*`` gauges (``imgserve_ready``, ``imgserve_model_info``,
    ``imgserve_model_fallback``, in-flight counts) went on counting in ``/metrics`` for as long as the server ran.
    The worker circus starts in its place calls this at start-up."""
    import os
    import re

    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path or not os.path.isdir(path):
        return []
    from prometheus_client import multiprocess

    dead = set()
    for name in os.listdir(path):
        match = re.fullmatch(r"gauge_live\w+_(\d+)\.db", name)
        if match and not _alive(int(match[1])):
            dead.add(int(match[1]))
    for pid in sorted(dead):
        multiprocess.mark_process_dead(pid, path)
    if dead:
        log.info("removed the live metrics of dead worker process(es) %s", ", ".join(map(str, sorted(dead))))
    return sorted(dead)


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
