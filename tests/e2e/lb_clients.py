"""Clients that treat a replica the way a load balancer in front of it does, for the shutdown tests.

The rules, which define what counts as a failed request when a replica is stopped:

* A prober asks ``/readyz`` (and, with gRPC, ``grpc.health.v1``) every ``probe_s`` on a fresh connection, as
  a balancer's health check does. Its own errors are not requests.
* A client opens a **new** connection only while the last probe said ready. Otherwise it counts ``not_sent``
  (the balancer would have sent the request to another replica) and looks again 20 ms later.
* An **established** keep-alive connection keeps being used, whatever the probe says (a Kubernetes Service
  keeps routing an established connection to its pod), until the server closes it: a response carrying
  ``Connection: close``, or a clean end of stream while idle.
* gRPC clients start a call only while gRPC health says SERVING (client-side health checking); calls in
  flight must complete.
* ``refused``: the TCP connect was refused (nothing was sent; safe to retry elsewhere).
* ``failed``: everything else: a reset or an end of stream after the request was sent, a timeout, any status
  other than 200. A correct drain has none.
"""

from __future__ import annotations

import contextlib
import http.client
import threading
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Tally:
    counts: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, detail: str = "") -> None:
        with self.lock:
            self.counts[kind] += 1
            if kind == "failed":
                self.failures.append(detail)


class Prober(threading.Thread):
    """Health checks every ``probe_s``: HTTP ``/readyz`` and optionally gRPC health (service "")."""

    def __init__(self, host: str, port: int, grpc_target: str | None = None, probe_s: float = 0.05):
        super().__init__(daemon=True)
        self.host, self.port, self.grpc_target, self.probe_s = host, port, grpc_target, probe_s
        self.ready = self.grpc_serving = False
        self.stop = threading.Event()
        self.not_ready_at: float | None = None  # monotonic time of the first not-ready answer (HTTP)
        self.not_serving_at: float | None = None  # the same for gRPC health

    def _http_ready(self) -> bool:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=2)
        try:
            conn.request("GET", "/readyz", headers={"Connection": "close"})
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def run(self) -> None:
        channel = stub = None
        if self.grpc_target:
            import grpc
            from grpc_health.v1 import health_pb2, health_pb2_grpc

            channel = grpc.insecure_channel(self.grpc_target)
            stub = health_pb2_grpc.HealthStub(channel)
        while not self.stop.is_set():
            ready = self._http_ready()
            if stub is not None:
                try:
                    status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status
                    self.grpc_serving = status == health_pb2.HealthCheckResponse.SERVING
                except Exception:  # noqa: BLE001 - unreachable = not serving, as for a balancer
                    self.grpc_serving = False
                if not self.grpc_serving and self.not_serving_at is None:
                    self.not_serving_at = time.monotonic()
            self.ready = ready
            if not ready and self.not_ready_at is None:
                self.not_ready_at = time.monotonic()
            time.sleep(self.probe_s)
        if channel is not None:
            channel.close()


class HttpClient(threading.Thread):
    """POSTs ``body`` to ``path`` in a loop over one keep-alive connection at a time (see module rules)."""

    def __init__(self, host: str, port: int, prober: Prober, tally: Tally, body: bytes, *,
                 path: str = "/predict", pause_s: float = 0.0):
        super().__init__(daemon=True)
        self.host, self.port, self.prober, self.tally, self.body = host, port, prober, tally, body
        self.path, self.pause_s = path, pause_s
        self.stop = threading.Event()

    def run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        headers = {"Content-Type": "image/png"}
        while not self.stop.is_set():
            if conn is None:
                if not self.prober.ready:
                    self.tally.add("not_sent")
                    time.sleep(0.02)
                    continue
                conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                try:
                    conn.connect()
                except ConnectionRefusedError:
                    self.tally.add("refused")
                    conn = None
                    time.sleep(0.02)
                    continue
                self.tally.add("connections")
            try:
                conn.request("POST", self.path, self.body, headers)
                resp = conn.getresponse()
                resp.read()
            except Exception as exc:  # noqa: BLE001 - classified, not hidden
                self.tally.add("failed", f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = None
                continue
            self.tally.add("ok" if resp.status == 200 else "failed", f"HTTP {resp.status}")
            if (resp.getheader("connection") or "").lower() == "close":
                self.tally.add("closed_by_server")
                conn.close()
                conn = None
            elif self.pause_s:
                time.sleep(self.pause_s)
        if conn is not None:
            conn.close()


class IdleConnection:
    """A keep-alive connection that made one request and then sits idle: the server must close it cleanly
    (a FIN, seen as end of stream) when it stops, never reset it."""

    def __init__(self, host: str, port: int, body: bytes):
        self.conn = http.client.HTTPConnection(host, port, timeout=60)
        self.conn.request("POST", "/predict", body, {"Content-Type": "image/png"})
        resp = self.conn.getresponse()
        resp.read()
        assert resp.status == 200

    def wait_closed(self, timeout: float) -> str:
        """'eof' (clean close), 'reset', 'open' (still open after ``timeout``) or 'data' (unexpected bytes)."""
        sock = self.conn.sock
        sock.settimeout(timeout)
        try:
            data = sock.recv(1)
        except ConnectionResetError:
            return "reset"
        except TimeoutError:
            return "open"
        finally:
            with contextlib.suppress(OSError):
                self.conn.close()
        return "eof" if data == b"" else "data"


class GrpcClient(threading.Thread):
    """OIP ``ModelInfer`` in a loop over one channel; new calls only while gRPC health says SERVING."""

    def __init__(self, target: str, model: str, prober: Prober, tally: Tally, image: bytes):
        super().__init__(daemon=True)
        self.target, self.model, self.prober, self.tally, self.image = target, model, prober, tally, image
        self.stop = threading.Event()

    def run(self) -> None:
        import numpy as np
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(self.target)
        inp = grpcclient.InferInput("image", [1], "BYTES")
        inp.set_data_from_numpy(np.array([self.image], dtype=np.object_))
        try:
            while not self.stop.is_set():
                if not self.prober.grpc_serving:
                    self.tally.add("not_sent")
                    time.sleep(0.02)
                    continue
                try:
                    client.infer(self.model, [inp], client_timeout=30)
                    self.tally.add("grpc_ok")
                except Exception as exc:  # noqa: BLE001 - classified, not hidden
                    self.tally.add("failed", f"gRPC {type(exc).__name__}: {exc}")
        finally:
            client.close()
