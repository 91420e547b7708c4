"""Where a worker's OIP gRPC server binds, and its TLS files: its settings, else what BentoML told the worker.

``IMGSERVE_GRPC_HOST`` unset means the address of the HTTP socket BentoML gave this worker (``bentoml serve
--host``), so ``--host 127.0.0.1`` no longer leaves gRPC open on every interface; outside BentoML, loopback.
TLS files default to those given to ``bentoml serve --ssl-certfile/--ssl-keyfile``. What the server then
checks and how it binds: serving/grpc_edge.py.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from .grpc_edge import GrpcSecurity


def worker_flag(name: str, argv: Sequence[str]) -> str | None:
    """The value of ``--name VALUE`` / ``--name=VALUE`` on a BentoML worker's command line."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def http_bind_host(argv: Sequence[str]) -> str | None:
    """The address of the HTTP socket BentoML's arbiter handed this worker (``--fd N``), or None."""
    fd = worker_flag("--fd", argv)
    if fd is None or not fd.isdigit():
        return None
    try:
        with socket.socket(fileno=socket.dup(int(fd))) as sock:  # a duplicate: closing it leaves BentoML's open
            return str(sock.getsockname()[0])
    except OSError:
        return None


def grpc_endpoint(
    host: str | None, token: str | None, certfile: str | None, keyfile: str | None, argv: Sequence[str]
) -> tuple[str, GrpcSecurity]:
    """Where the worker's gRPC server binds and what it checks: explicit settings first, then what BentoML
    gave the worker's HTTP server (``argv``: its command line), then loopback."""
    bind = host or http_bind_host(argv) or "127.0.0.1"
    if not certfile and not keyfile:
        certfile, keyfile = worker_flag("--ssl-certfile", argv), worker_flag("--ssl-keyfile", argv)
    return bind, GrpcSecurity(token or None, certfile or None, keyfile or None)
