"""serving.ports on real sockets and a real second process: a taken port is seen as taken, and a listener
that is not this server's own process is named."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from imgserve.cli import main
from serving.ports import foreign_listeners, port_taken

LISTENER = "import socket, sys, time\ns = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n" \
           "print(s.getsockname()[1], flush=True); time.sleep(60)"


def test_port_taken_sees_a_listener_and_not_a_free_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert port_taken("127.0.0.1", port)
    assert not port_taken("127.0.0.1", port)


def test_foreign_listeners_names_another_process_and_not_this_one() -> None:
    with socket.socket() as own:
        own.bind(("127.0.0.1", 0))
        own.listen()
        assert foreign_listeners(own.getsockname()[1]) == []
    other = subprocess.Popen([sys.executable, "-c", LISTENER], stdout=subprocess.PIPE, text=True)
    try:
        port = int(other.stdout.readline())
        found = foreign_listeners(port)
        assert len(found) == 1 and found[0].startswith(f"pid {other.pid} (") and "-c import socket" in found[0]
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize("which", ["http", "grpc"])
def test_serve_refuses_a_port_in_use_in_one_line(
    which: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: BentoML's circus traceback (HTTP), or workers failing to start over and over (gRPC)."""
    monkeypatch.setattr(os, "execvpe", lambda *a: pytest.fail("serve went on to start BentoML"))
    with socket.socket() as taken, socket.socket() as free:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        free.bind(("127.0.0.1", 0))
        busy, spare = taken.getsockname()[1], free.getsockname()[1]
        free.close()  # a port nobody listens on
        http, grpc = (busy, spare) if which == "http" else (spare, busy)
        monkeypatch.setenv("IMGSERVE_GRPC_PORT", str(grpc))
        assert main(["serve", "--port", str(http)]) == 2
    what, setting = ("HTTP", "--port") if which == "http" else ("OIP gRPC", "IMGSERVE_GRPC_PORT")
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"imgserve serve: error: the {what} port 127.0.0.1:{busy} is in use by another process")
    assert setting in err
