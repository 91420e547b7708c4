"""The service's lifecycle as an orchestrator drives it.

* Start-up via ``imgserve serve`` with no model yet: alive but not ready, 503 + Retry-After, then ready on its
  own once a version is published (the alias watch), without a restart.
* SIGTERM under load: not ready at once, in-flight requests finish, connections close cleanly, bounded exit.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from inference.registry import Registry
from tests.e2e.conftest import Server, free_port, running_server
from tests.e2e.lb_clients import GrpcClient, HttpClient, IdleConnection, Prober, Tally
from tests.fixtures import encode_image, register_tiny, sample_image

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def grpc_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, grpc_port: int) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("lifecycle")
    registry = Registry(tmp / "models")  # empty: model "tiny" has no versions yet
    with running_server(registry, tmp, via_cli=True, wait_ready=False, poll_interval_s=0.3,
                        grpc_port=grpc_port, grpc_host="127.0.0.1") as srv:
        yield srv


def grpc_health(port: int, service: str = "") -> str:
    """The server's ``grpc.health.v1`` answer, as a status name (a real client, as a Kubernetes probe)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def test_alive_but_not_ready_without_a_model(server: Server, grpc_port: int) -> None:
    with server.client() as client:
        assert client.get("/livez").status_code == 200
        assert client.get("/readyz").status_code == 503
        for resp in (
            client.post("/predict", content=encode_image(sample_image(), "PNG"), headers={"content-type": "image/png"}),
            client.get("/model"),
        ):
            assert resp.status_code == 503
            assert resp.json()["type"] == "not_ready"
            assert "no versions" in resp.json()["error"]
            assert resp.headers["retry-after"].isdigit()
    assert "no model to serve yet" in server.log_text()
    assert grpc_health(grpc_port) == grpc_health(grpc_port, "inference.GRPCInferenceService") == "NOT_SERVING"


def test_becomes_ready_when_a_version_is_published(server: Server, grpc_port: int) -> None:
    register_tiny(server.registry)
    t0 = time.monotonic()
    while httpx.get(server.url + "/readyz").status_code != 200:
        assert time.monotonic() - t0 < 10, server.log_text()[-2000:]
        time.sleep(0.05)
    # /readyz answered from one worker; each request may reach the other, which may load a moment later
    while (resp := httpx.post(server.url + "/predict", content=encode_image(sample_image(), "PNG"),
                              headers={"content-type": "image/png"})).status_code == 503:
        assert resp.json()["type"] == "not_ready" and time.monotonic() - t0 < 10, resp.text
        time.sleep(0.05)
    assert resp.status_code == 200 and resp.json()["model"]["version"] == 1
    # gRPC health follows readiness within its 0.5 s sync interval, in every worker (each call may reach another)
    deadline = time.monotonic() + 5
    while {grpc_health(grpc_port), grpc_health(grpc_port, "inference.GRPCInferenceService")} != {"SERVING"}:
        assert time.monotonic() < deadline, "gRPC health did not follow /readyz"
        time.sleep(0.1)


def test_cli_ran_bentoml_with_our_port(server: Server) -> None:
    assert server.url.rsplit(":", 1)[1] in server.log_text()  # "listening on http://127.0.0.1:<port>"


# ---- SIGTERM under load: drain ------------------------------------------------------------------------------
DRAIN_S = 6.0  # IMGSERVE_DRAIN_S for the test server: its exit bound


def test_sigterm_under_load_drops_nothing(tmp_path: Path) -> None:
    """32 HTTP clients on keep-alive connections, 4 gRPC clients and 4 idle keep-alive connections, then
    SIGTERM to ``bentoml serve`` (what Kubernetes and ``docker stop`` send). Clients follow the balancer rules
    of tests/e2e/lb_clients.py. Expected: /readyz and gRPC health say no at once, no request fails, every
    connection ends cleanly (``Connection: close`` on its last response, or a FIN while idle), and the
    process exits within the drain bound."""
    registry = Registry(tmp_path / "models")
    register_tiny(registry, conv_layers=2)  # a CNN slow enough that requests are in flight at SIGTERM
    grpc_port = free_port()
    with running_server(registry, tmp_path, grpc_port=grpc_port, grpc_host="127.0.0.1", drain_s=DRAIN_S) as srv:
        host, port = "127.0.0.1", int(srv.url.rsplit(":", 1)[1])
        body = encode_image(sample_image((28, 28), "L"), "PNG")
        prober = Prober(host, port, grpc_target=f"{host}:{grpc_port}")
        prober.start()
        deadline = time.monotonic() + 30
        while not (prober.ready and prober.grpc_serving):
            assert time.monotonic() < deadline, f"HTTP ready {prober.ready}, gRPC health SERVING {prober.grpc_serving}"
            time.sleep(0.05)
        tally = Tally()
        idle = [IdleConnection(host, port, body) for _ in range(4)]
        clients: list[threading.Thread] = [HttpClient(host, port, prober, tally, body) for _ in range(32)]
        clients += [GrpcClient(f"{host}:{grpc_port}", "tiny", prober, tally, body) for _ in range(4)]
        for c in clients:
            c.start()
        time.sleep(2.0)  # steady load
        before = tally.counts["ok"], tally.counts["grpc_ok"]
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        while prober.not_ready_at is None and time.monotonic() - t0 < 5:
            time.sleep(0.02)
        draining = httpx.get(srv.url + "/livez", headers={"Connection": "close"}, timeout=5)
        assert draining.status_code == 200, "liveness must hold while the worker drains"
        assert draining.headers.get("connection") == "close"
        try:
            code = srv.proc.wait(timeout=DRAIN_S + 30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {DRAIN_S + 30} s after SIGTERM:\n{srv.log_text()[-3000:]}")
        exit_s = time.monotonic() - t0
        idle_ends = [c.wait_closed(timeout=1) for c in idle]
        for c in clients:
            c.stop.set()  # type: ignore[attr-defined]
        for c in clients:
            c.join(timeout=30)
        prober.stop.set()
        not_ready_after = (prober.not_ready_at or float("inf")) - t0
        not_serving_after = (prober.not_serving_at or float("inf")) - t0
        counts = dict(tally.counts)
        print(f"\nSIGTERM under load: {counts}; (ok, grpc_ok) before SIGTERM {before}; /readyz 503 after {not_ready_after:.2f} s,"
              f" gRPC health NOT_SERVING after {not_serving_after:.2f} s;"
              f" exit after {exit_s:.2f} s (code {code}); idle connections: {idle_ends}")
        assert not tally.failures, f"{len(tally.failures)} failed: {Counter(tally.failures).most_common(5)}"
        assert counts["ok"] > before[0] and counts["grpc_ok"] > before[1], "nothing was answered after SIGTERM"
        assert counts.get("closed_by_server", 0) >= 32, "busy keep-alive connections must end with Connection: close"
        assert idle_ends == ["eof"] * 4, idle_ends
        assert code == 0, srv.log_text()[-3000:]
        assert not_ready_after < 2.0 and not_serving_after < 2.0, "readiness must turn 503 / NOT_SERVING at once"
        assert exit_s < DRAIN_S + 10, f"exit took {exit_s:.1f} s (drain bound {DRAIN_S} s + margin for a loaded machine)"
        assert "Traceback" not in srv.log_text(), srv.log_text()[-4000:]
