"""serving/lifecycle.py pieces that need no server: the Connection: close middleware and the clean-up of dead
workers' metric files (the SIGTERM drain itself is tested on a real server: tests/e2e/test_lifecycle.py)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from serving.lifecycle import CloseWhenDraining, Drain, forget_dead_workers


async def _app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
    await send({"type": "http.response.start", "status": 200, "headers": [(b"connection", b"keep-alive")]})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]


def _get(drain: Drain) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=CloseWhenDraining(_app, drain))
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            return await client.get("/")

    return asyncio.run(go())


def test_connection_close_only_while_draining() -> None:
    drain = Drain(10)
    assert _get(drain).headers.get_list("connection") == ["keep-alive"]
    drain.draining = True
    assert _get(drain).headers.get_list("connection") == ["close"]  # replaced, not added beside


def test_drain_bounds() -> None:
    assert Drain(15).finish_s == 5.0 and Drain(6).finish_s == 2.0 and Drain(0).finish_s == 0.0


def test_forget_dead_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid, live_pid = int(dead.stdout), os.getpid()
    for pid in (dead_pid, live_pid):
        (tmp_path / f"gauge_livemax_{pid}.db").write_bytes(b"")
        (tmp_path / f"counter_{pid}.db").write_bytes(b"")  # counters stay: their totals still count
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert forget_dead_workers() == [dead_pid]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"counter_{dead_pid}.db", f"counter_{live_pid}.db", f"gauge_livemax_{live_pid}.db"]
    )
