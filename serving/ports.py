"""Whether a port is someone else's: one clear error at start, never a traceback or a silently shared port.

A worker's OIP gRPC server binds with ``SO_REUSEPORT`` so that all workers of one server share the port (the
kernel spreads connections over them). The same option let a *second* imgserve on the machine bind the same
gRPC port without any error: two servers on 8001, checked with ``ss -ltnp``, each client connection answered
by either of them (possibly another model or version). So after it listens, a worker looks at who else listens
on its port (:func:`foreign_listeners`) and gives up, like a failed bind, when that is not its own server.
``imgserve serve`` checks both ports before it starts BentoML (:func:`port_taken`), for a one-line error.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket

import psutil


def port_taken(host: str, port: int) -> bool:
    """Whether binding ``host:port`` fails with "address in use" (a listener without our reuse options)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed socket in TIME_WAIT is no owner
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def foreign_listeners(port: int) -> list[str]:
    """The processes listening on TCP ``port`` other than this process, its parent (BentoML's arbiter) and
    its parent's children (the other workers), as ``pid N (command line)``; empty when it cannot tell."""
    me, parent = os.getpid(), os.getppid()
    own = {me, parent}
    try:
        own |= {p.pid for p in psutil.Process(parent).children()}
        pids = {c.pid for c in psutil.net_connections("tcp")
                if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid}
    except psutil.Error:
        return []
    return [_describe(pid) for pid in sorted(pids - own)]


def _describe(pid: int) -> str:
    with contextlib.suppress(psutil.Error):
        return f"pid {pid} ({' '.join(psutil.Process(pid).cmdline())[:160]})"
    return f"pid {pid}"
