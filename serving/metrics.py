"""Prometheus metrics of the serving process, exposed on BentoML's ``/metrics``.

``bentoml serve`` runs each worker with ``PROMETHEUS_MULTIPROC_DIR`` set, and its ``/metrics`` merges every
worker's files with ``MultiProcessCollector``. So ``prometheus_client`` is imported only when the metrics are
first created (in the worker, after that variable is set), gauges say how workers combine
(``livesum``/``livemax``), and ``Info`` (not multiprocess-safe) is a gauge with value 1 per served version.
Outside BentoML (unit tests) the same objects land in the default registry.
"""

from __future__ import annotations

import threading
from typing import Any

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
INFERENCE_BUCKETS = (0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

# Every custom metric name, as it appears on /metrics (tests and docs rely on these).
METRIC_NAMES = (
    "imgserve_requests_total",
    "imgserve_request_duration_seconds",
    "imgserve_requests_in_flight",
    "imgserve_batch_size",
    "imgserve_inference_seconds",
    "imgserve_queue_wait_seconds",
    "imgserve_queue_depth",
    "imgserve_model_info",
    "imgserve_model_swaps_total",
    "imgserve_model_load_seconds",
    "imgserve_model_load_failures_total",
    "imgserve_ready",
)
# Exported once there is something to report: a drift signal of a version with a reference.json.
CONDITIONAL_METRIC_NAMES = ("imgserve_drift_psi",)


class ServingMetrics:
    """One set per process (``get()``): Prometheus refuses to register a name twice."""

    _instance: ServingMetrics | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram  # see the module docstring for why here

        self.requests = Counter(
            "imgserve_requests", "requests by endpoint (route template or grpc:Method) and status", ["endpoint", "status"]
        )
        self.latency = Histogram(
            "imgserve_request_duration_seconds", "HTTP request latency by endpoint", ["endpoint"],
            buckets=LATENCY_BUCKETS,
        )
        self.in_flight = Gauge(
            "imgserve_requests_in_flight", "prediction requests admitted, all transports (HTTP, OIP REST, gRPC)",
            multiprocess_mode="livesum",
        )
        self.batch_size = Histogram("imgserve_batch_size", "rows per ONNX Runtime run", buckets=BATCH_BUCKETS)
        self.inference = Histogram(
            "imgserve_inference_seconds", "seconds per ONNX Runtime run (one batch)", buckets=INFERENCE_BUCKETS
        )
        self.queue_wait = Histogram(
            "imgserve_queue_wait_seconds", "longest wait in the queue of the requests in a batch",
            buckets=LATENCY_BUCKETS,
        )
        self.queue_depth = Gauge(
            "imgserve_queue_depth", "rows waiting for a batch lane", multiprocess_mode="livesum"
        )
        self.model_info = Gauge(
            "imgserve_model_info", "the served model version (1) per worker", ["model", "version", "variant"],
            multiprocess_mode="livemax",
        )
        self.swaps = Counter("imgserve_model_swaps", "model versions swapped in (including the first load)", ["model"])
        self.load_seconds = Histogram(
            "imgserve_model_load_seconds", "seconds to load and warm a model version",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
        )
        self.load_failures = Counter(
            "imgserve_model_load_failures", "model versions that could not be loaded or warmed", ["model"]
        )
        self.ready = Gauge(
            "imgserve_ready", "1 when the worker serves a model, 0 while it has none (the lowest worker counts)",
            multiprocess_mode="livemin",
        )
        self.drift_psi = Gauge(
            "imgserve_drift_psi", "population stability index of a live signal against the version's reference "
            "(serving/drift.py; the highest worker counts)", ["model", "version", "signal"],
            multiprocess_mode="livemax",
        )

    @classmethod
    def get(cls) -> ServingMetrics:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    # ---- observers (hooks of the runtime and of the HTTP front end) --------------------------------
    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def observe_admission(self, inflight: int, queue_depth: int) -> None:
        """``ModelRuntime``'s ``on_admit`` hook: the worker's admitted requests and queued rows."""
        self.in_flight.set(inflight)
        self.queue_depth.set(queue_depth)

    def observe_batch(self, model: Any, rows: int, infer_seconds: float, max_wait_s: float) -> None:
        """``MicroBatcher``'s ``on_batch`` hook."""
        self.batch_size.observe(rows)
        self.inference.observe(infer_seconds)
        self.queue_wait.observe(max_wait_s)

    def observe_drift(self, model: str, version: int, signal: str, value: float) -> None:
        """``DriftMonitor``'s ``on_psi`` hook."""
        self.drift_psi.labels(model, str(version), signal).set(value)

    def observe_swap(self, old_label: str | None, new_label: str, seconds: float) -> None:
        """``ModelRuntime``'s ``on_swap`` hook; labels are ``name:version:variant``."""
        if old_label:
            self.model_info.labels(*old_label.split(":", 2)).set(0)
        name, version, variant = new_label.split(":", 2)
        self.model_info.labels(name, version, variant).set(1)
        self.swaps.labels(name).inc()
        self.load_seconds.observe(seconds)
