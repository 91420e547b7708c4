"""Real servers for e2e tests: ``python -m bentoml serve .`` (or ``imgserve serve``) as a subprocess on a
free localhost port, against a temp registry; one server per test module, torn down with its process group."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from inference.registry import Registry
from tests.e2e.processes import stop
from tests.fixtures import register_tiny
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    registry: Registry
    ready_after: float = 0.0  # seconds from spawn to the awaited probe answering 200
    verify: Any = True  # TLS: what a client should trust (an ssl.SSLContext)

    def client(self, **kw: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, verify=self.verify, **kw)  # type: ignore[arg-type]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def server_env(registry: Registry, home: Path, **settings: object) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(ROOT),
        BENTOML_HOME=str(home),
        BENTOML_DO_NOT_TRACK="true",
        IMGSERVE_MODELS_DIR=str(registry.root),
        IMGSERVE_MODEL="tiny",
        IMGSERVE_GRPC_PORT="0",  # off unless a test asks for it (tests/e2e/test_oip_service.py)
    )
    env.update({f"IMGSERVE_{k.upper()}": str(v) for k, v in settings.items()})
    return env


@contextlib.contextmanager
def running_server(
    registry: Registry,
    tmp: Path,
    *,
    via_cli: bool = False,
    wait_ready: bool = True,
    extra_args: tuple[str, ...] = (),
    scheme: str = "http",
    verify: Any = True,
    **settings: object,
) -> Iterator[Server]:
    port = free_port()
    if via_cli:
        cmd = [sys.executable, "-m", "imgserve", "serve", "--port", str(port), "--host", "127.0.0.1"]
    else:
        cmd = [sys.executable, "-m", "bentoml", "serve", ".", "--port", str(port), "--host", "127.0.0.1"]
    cmd += list(extra_args)
    log = tmp / f"server-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=server_env(registry, tmp / "bentoml", **settings),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: teardown reaches the arbiter and its workers
        )
    server = Server(f"{scheme}://127.0.0.1:{port}", proc, log, registry, verify=verify)
    try:
        server.ready_after = wait_until(server, "/readyz" if wait_ready else "/livez")
        yield server
    finally:
        stop(proc)


@contextlib.contextmanager
def tiny_server(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    *,
    model: dict[str, Any] | None = None,
    **settings: Any,
) -> Iterator[Server]:
    """A server on a fresh temp registry holding one tiny model (``register_tiny(**model)``, production)."""
    tmp = tmp_path_factory.mktemp(name)
    registry = Registry(tmp / "models")
    register_tiny(registry, **(model or {}))
    with running_server(registry, tmp, **settings) as server:
        yield server


def wait_until(server: Server, path: str, timeout: float = 60.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if server.proc.poll() is not None:
            pytest.fail(f"server exited with {server.proc.returncode}:\n{server.log_text()[-4000:]}")
        try:
            if httpx.get(server.url + path, timeout=2.0, verify=server.verify).status_code == 200:
                return time.monotonic() - t0
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"{path} not 200 after {timeout}s:\n{server.log_text()[-4000:]}")
