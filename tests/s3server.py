"""A real S3 API server for tests: moto's ``moto_server`` in its own process on a free loopback port.

Reusable by any test (unit, integration, e2e): the ``s3_server`` fixture (tests/conftest.py) starts one per
test session; ``s3_bucket`` gives each test a fresh bucket and puts the standard AWS variables in the
environment, so ``Registry("s3://...")``, boto3 and subprocesses (``bentoml serve``, ``imgserve admin``) all
reach it through ``AWS_ENDPOINT_URL`` like they would reach a real store. For a subprocess pass
``{**os.environ, **server.env()}``.

moto 5.2.5 honours ``If-None-Match: *`` and ``If-Match`` on PutObject (412 PreconditionFailed otherwise;
``If-Match`` on a missing key: 404). Its check runs before the write in a threaded server, so strictly it is
not atomic under concurrency; 450 deliberately simultaneous pairs of conditional writes all had exactly one
winner here (tests/unit/test_s3_registry.py keeps checking it).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.ports import free_port

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"


def moto_server_command() -> list[str]:
    exe = Path(sys.executable).with_name("moto_server")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("moto_server")
    if found:
        return [found]
    return [sys.executable, "-m", "moto.server"]


@dataclass
class S3Server:
    endpoint: str
    proc: subprocess.Popen[bytes]
    log: Path

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point an SDK (and imgserve) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
        }

    def client(self) -> Any:
        import boto3

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def new_bucket(self, prefix: str = "imgserve-test") -> str:
        name = f"{prefix}-{secrets.token_hex(4)}"
        self.client().create_bucket(Bucket=name)
        return name


@contextlib.contextmanager
def running_s3_server(log: Path, timeout_s: float = 60.0) -> Iterator[S3Server]:
    port = free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen([*moto_server_command(), "-H", "127.0.0.1", "-p", str(port)], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    server = S3Server(f"http://127.0.0.1:{port}", proc, log)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {proc.returncode}:\n{log.read_text(errors='replace')[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"moto_server not listening after {timeout_s} s")
            time.sleep(0.1)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
