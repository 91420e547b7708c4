"""HAProxy in front of several imgserve replicas: the config, the process, and its view of the servers.

The settings below were tuned with the replica rehearsal (``python -m deploy.replicas``; numbers in
docs/deploying.md). What each buys:

* ``option httpchk GET /readyz`` every 500 ms, ``fall 1``: a replica that starts draining (its /readyz turns
  503 on SIGTERM) gets no new requests after at most one check interval; ``rise 2`` keeps a restarting one
  out until it answered ready twice.
* ``retry-on conn-failure empty-response`` with ``retries 3`` and ``option redispatch 1``: a request that
  meets a refused connect (a replica gone between two checks), or a connection closed with no response
  (a replica killed mid-request), is sent again, each time to another server. Safe here because predicting
  is idempotent.
* ``option http-buffer-request``: without it those retries did not happen for our POSTs. HAProxy forwarded
  the headers before the body had arrived, could not replay the request, and closed the client's connection
  with no response and no log line: 2 of 10 requests were lost in a bench test with one server that closed
  without answering, and 4 in a rolling restart. With it, HAProxy waits for the whole body (up to
  ``tune.bufsize``, 256 KiB here; a bigger image is forwarded as it comes and cannot be retried) and 10 of 10
  succeeded.
* ``timeout http-keep-alive`` 10 s on both sides, below the service's 120 s keep-alive: HAProxy, not the
  replica, closes idle connections, so no request is sent on a connection the replica is closing.
* ``http-response set-header X-Imgserve-Replica``: every answer names the server that produced it, which is
  how the rehearsal's timeline knows who served which version when.
"""

from __future__ import annotations

import contextlib
import csv
import io
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPLICA_HEADER = "X-Imgserve-Replica"


@dataclass(frozen=True)
class Backend:
    name: str
    port: int


# HAProxy's own default: retry the connect only (3 times, to the same server).
PLAIN_RETRIES = "    retries 3"
L7_RETRIES = """\
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response
    option http-buffer-request"""


def loopback_listener() -> socket.socket:
    """A listening socket on a free loopback port, for HAProxy to inherit (``bind fd@N``, see ``running``).

    The port is held from the moment it is chosen. A port number picked earlier and bound by haproxy only
    later (after the replicas have started) can be taken in between: each ``bentoml serve`` opens two
    listeners of its own on random loopback ports. haproxy then exits on "cannot bind", and a connect to
    the port reaches the other listener, so nothing noticed until no server state ever came back."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


def config(frontend: str, backends: list[Backend], *, socket_path: Path, ready_path: str,
           check_interval_ms: int = 500, l7_retries: bool = True) -> str:
    """haproxy.cfg text: one HTTP frontend bound to ``frontend`` (``127.0.0.1:8080``, or ``fd@N`` for an
    inherited listener), one backend health-checked on ``ready_path``. ``l7_retries=False`` keeps HAProxy's
    default retries, to measure what clients see without them."""
    servers = "\n".join(f"    server {b.name} 127.0.0.1:{b.port} check" for b in backends)
    return f"""\
global
    maxconn 500
    stats socket {socket_path} mode 600 level admin
    tune.bufsize 262144
    log stdout format raw local0 info

defaults
    mode http
    log global
    option httplog
    option http-keep-alive
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 10s
    timeout queue 10s

frontend imgserve
    bind {frontend}
    default_backend replicas

backend replicas
    balance roundrobin
    option httpchk GET {ready_path}
    http-check expect status 200
    default-server inter {check_interval_ms} fastinter {check_interval_ms // 2} downinter {check_interval_ms} fall 1 rise 2
{L7_RETRIES if l7_retries else PLAIN_RETRIES}
    http-reuse safe
    http-response set-header {REPLICA_HEADER} %[srv_name]
{servers}
"""


def binary() -> str | None:
    """HAProxy from Debian's package (``make system-deps``), or None."""
    return shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy",) if Path(p).exists()), None)


@contextlib.contextmanager
def running(cfg_text: str, workdir: Path, *, socket_path: Path, listener: socket.socket | None = None,
            timeout_s: float = 10.0) -> Iterator[subprocess.Popen[bytes]]:
    """haproxy in the foreground (``-db``) as a plain child process, stopped on exit; ``listener`` (whose
    descriptor the config binds as ``fd@N``) is handed over to it. Ready when its stats socket answers,
    and only while the process still runs: a haproxy that exited is an error naming its log."""
    exe = binary()
    if exe is None:
        raise FileNotFoundError("haproxy is not installed (Debian package 'haproxy'; make system-deps)")
    cfg, log_path = workdir / "haproxy.cfg", workdir / "haproxy.log"
    cfg.write_text(cfg_text)
    fds = () if listener is None else (listener.fileno(),)
    check = subprocess.run([exe, "-c", "-f", str(cfg)], capture_output=True, text=True, pass_fds=fds)
    if check.returncode != 0:
        raise RuntimeError(f"haproxy rejected {cfg}:\n{check.stdout}{check.stderr}")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([exe, "-db", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, pass_fds=fds)
    if listener is not None:
        listener.close()  # haproxy holds its own copy; ours would queue connections after haproxy is gone
    try:
        deadline = time.monotonic() + timeout_s
        while not _answers(socket_path):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"haproxy is not running ({exit_note(proc)}); its log, {log_path}:\n"
                                   + log_path.read_text(errors="replace")[-2000:])
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def exit_note(proc: subprocess.Popen[bytes]) -> str:
    """Whether the haproxy process still runs, or how it ended."""
    code = proc.poll()
    return "running" if code is None else f"exited with {code}"


def _answers(socket_path: Path) -> bool:
    try:
        return bool(stats(socket_path))
    except OSError:
        return False


def stats(socket_path: Path) -> list[dict[str, str]]:
    """``show stat`` from the stats socket: one row per frontend, backend and server (HAProxy's CSV)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2.0)
        sock.connect(str(socket_path))
        sock.sendall(b"show stat\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    text = b"".join(chunks).decode().lstrip("# ")
    return list(csv.DictReader(io.StringIO(text)))


def server_states(socket_path: Path) -> dict[str, str]:
    """Each backend server's status as HAProxy sees it ("UP", "DOWN", "UP 1/2", …)."""
    return {r["svname"]: r["status"] for r in stats(socket_path) if r["svname"] not in ("FRONTEND", "BACKEND")}


def backend_counters(socket_path: Path) -> dict[str, int]:
    """What the balancer absorbed: retries (``wretr``), redispatches to another server (``wredis``), failed
    connects (``econ``) and responses it could not get (``eresp``), over the backend's lifetime."""
    row = next(r for r in stats(socket_path) if r["svname"] == "BACKEND")
    return {key: int(row[key] or 0) for key in ("wretr", "wredis", "econ", "eresp")}
