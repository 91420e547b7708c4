"""deploy.haproxy.running against the real haproxy binary: it serves on the listener it inherits, and a
haproxy that cannot run is an error at once, never a balancer that silently reports no servers."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from deploy import haproxy

pytestmark = pytest.mark.skipif(haproxy.binary() is None, reason="needs Debian's haproxy (make system-deps)")


def _config(frontend: str, tmp_path: Path) -> str:
    # one backend on a port nobody listens on: haproxy itself answers 503, which is all these tests need
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    return haproxy.config(frontend, [haproxy.Backend("r1", dead)], socket_path=tmp_path / "lb.sock",
                          ready_path="/readyz")


def test_haproxy_serves_on_the_listener_it_inherits(tmp_path: Path) -> None:
    listener = haproxy.loopback_listener()
    port = listener.getsockname()[1]
    cfg = _config(f"fd@{listener.fileno()}", tmp_path)
    with haproxy.running(cfg, tmp_path, socket_path=tmp_path / "lb.sock", listener=listener) as proc:
        assert listener.fileno() == -1  # handed over: our copy is closed
        resp = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5)
        assert resp.status_code == 503 and "r1" in haproxy.server_states(tmp_path / "lb.sock")
        assert haproxy.exit_note(proc) == "running"
    assert proc.poll() is not None
    with pytest.raises(httpx.ConnectError):  # gone with haproxy, not queued on a socket nobody serves
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)


def test_a_port_another_process_listens_on_is_an_error_not_a_running_balancer(tmp_path: Path) -> None:
    """How the replica rehearsal once failed in CI (probably): the balancer's port, chosen early and bound
    late, had been taken by another server's listener. haproxy exited on "cannot bind", yet a connect to
    the port succeeded, and the harness waited 60 s for server states that never came."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(8)
        cfg = _config(f"127.0.0.1:{squatter.getsockname()[1]}", tmp_path)
        with pytest.raises(RuntimeError, match=r"(?s)haproxy is not running \(exited with \d+\).*cannot bind"):
            with haproxy.running(cfg, tmp_path, socket_path=tmp_path / "lb.sock"):
                pytest.fail("running() yielded with haproxy unable to bind its port")
