"""Prometheus metrics of the serving process, exposed on BentoML's ``/metrics``.

``bentoml serve`` runs each worker with ``PROMETHEUS_MULTIPROC_DIR`` set, and its ``/metrics`` merges every
worker's files with ``MultiProcessCollector``. So ``prometheus_client`` is imported only when the metrics are
first created (in the worker, after that variable is set), gauges say how workers combine
(``livesum``/``livemax``), and ``Info`` (not multiprocess-safe) is a gauge with value 1 per served version.
Outside BentoML (unit tests) the same objects land in the default registry.
"""

from __future__ import annotations

import os
import threading
import time
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
    "imgserve_model_inferences_total",
    "imgserve_model_executions_total",
    "imgserve_model_requests_total",
    "imgserve_model_request_seconds_total",
    "imgserve_model_queue_seconds_total",
    "imgserve_model_compute_seconds_total",
    "imgserve_model_last_inference_timestamp_seconds",
    "imgserve_model_load_failures_total",
    "imgserve_ready",
)
# Exported once there is something to report: a drift signal of a version with a reference.json.
CONDITIONAL_METRIC_NAMES = (
    "imgserve_drift_psi", "imgserve_canary_aborts_total", "imgserve_shadow_compared_total",
    "imgserve_shadow_agreed_total", "imgserve_shadow_confidence_total", "imgserve_shadow_shed_total",
)

# One ``status`` vocabulary for every protocol: the HTTP status code. A gRPC call's code is mapped to its HTTP
# equivalent (the mapping grpc-gateway and Google's API design guide use), so ``status=~"5.."`` finds server-side
# failures whichever protocol carried them; the ``protocol`` label tells the two apart.
GRPC_TO_HTTP = {
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501, "INTERNAL": 500,
    "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401,
}
# Per model and version, what Triton's ModelStatistics reports (serving/oip_dataplane.py reads them back).
_STAT_COUNTERS = {
    "imgserve_model_inferences": "inference_count",
    "imgserve_model_executions": "execution_count",
    "imgserve_model_queue_seconds": "queue_s",
    "imgserve_model_compute_seconds": "compute_s",
}


class ServingMetrics:
    """One set per process (``get()``): Prometheus refuses to register a name twice."""

    _instance: ServingMetrics | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self._children: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}  # bounded: route templates
        self._providers: dict[str, str] = {}  # model name -> provider of its served version
        self._define_request_metrics()
        self._define_model_metrics()
        self._define_live_ops_metrics()

    def _define_request_metrics(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram  # see the module docstring for why here

        self.requests = Counter(
            "imgserve_requests", "requests by endpoint (route template or grpc:Method), protocol and HTTP status "
            "(gRPC codes mapped to their HTTP equivalents)",
            ["endpoint", "protocol", "status"],
        )
        self.latency = Histogram(
            "imgserve_request_duration_seconds", "HTTP request latency by endpoint", ["endpoint"],
            buckets=LATENCY_BUCKETS,
        )
        self.in_flight = Gauge(
            "imgserve_requests_in_flight", "prediction requests admitted, all transports (HTTP, OIP REST, gRPC)",
            multiprocess_mode="livesum",
        )
        self.batch_size = Histogram(
            "imgserve_batch_size", "rows per ONNX Runtime run", ["model"], buckets=BATCH_BUCKETS
        )
        self.inference = Histogram(
            "imgserve_inference_seconds", "seconds per ONNX Runtime run (one batch)", ["model"],
            buckets=INFERENCE_BUCKETS,
        )
        self.queue_wait = Histogram(
            "imgserve_queue_wait_seconds", "longest wait in the queue of the requests in a batch", ["model"],
            buckets=LATENCY_BUCKETS,
        )
        self.queue_depth = Gauge(
            "imgserve_queue_depth", "rows waiting for a batch lane", multiprocess_mode="livesum"
        )

    def _define_model_metrics(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.model_info = Gauge(
            "imgserve_model_info", "the served model version (1) per worker, with the ONNX Runtime execution "
            "provider running it", ["model", "version", "variant", "provider"],
            multiprocess_mode="livemax",
        )
        self.swaps = Counter("imgserve_model_swaps", "model versions swapped in (including the first load)", ["model"])
        self.load_seconds = Histogram(
            "imgserve_model_load_seconds", "seconds to load and warm a model version",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
        )
        per_model = ["model", "version"]
        self.inferences = Counter("imgserve_model_inferences", "rows (images) run by the model", per_model)
        self.executions = Counter("imgserve_model_executions", "model executions (batches)", per_model)
        self.model_requests = Counter(
            "imgserve_model_requests", "requests that reached the model's queue, by outcome", [*per_model, "outcome"]
        )
        self.model_request_seconds = Counter(
            "imgserve_model_request_seconds", "seconds from queueing to result, summed, by outcome",
            [*per_model, "outcome"],
        )
        self.queue_seconds = Counter("imgserve_model_queue_seconds", "seconds requests waited for a lane, summed", per_model)
        self.compute_seconds = Counter(
            "imgserve_model_compute_seconds", "seconds of model execution per request, summed", per_model
        )
        self.last_inference = Gauge(
            "imgserve_model_last_inference_timestamp_seconds", "when the model last answered a request",
            per_model, multiprocess_mode="max",
        )
        self.load_failures = Counter(
            "imgserve_model_load_failures", "model versions that could not be loaded or warmed", ["model"]
        )
        self.fallback = Gauge(
            "imgserve_model_fallback", "1 while a worker serves another version because its alias target cannot be "
            "loaded (serving/loading.py; /model says which and why)", ["model"], multiprocess_mode="livemax",
        )
        self.ready = Gauge(
            "imgserve_ready", "1 when the worker serves a model, 0 while it has none (the lowest worker counts)",
            multiprocess_mode="livemin",
        )

    def _define_live_ops_metrics(self) -> None:
        from prometheus_client import Counter, Gauge

        self.canary_aborts = Counter(
            "imgserve_canary_aborts", "canaries removed by the automatic guard (serving/canary.py)", ["model", "version"]
        )
        shadow = ["model", "version"]  # the shadow version
        self.shadow_compared = Counter("imgserve_shadow_compared", "requests mirrored to the shadow and compared", shadow)
        self.shadow_agreed = Counter("imgserve_shadow_agreed", "... whose top-1 matched production's", shadow)
        self.shadow_confidence = Counter(
            "imgserve_shadow_confidence", "top-1 confidence summed (divide by compared)", [*shadow, "role"]
        )
        self.shadow_shed = Counter("imgserve_shadow_shed", "mirrors skipped: queue busy, late or failed", shadow)
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
    def observe_request(self, endpoint: str, status: int, seconds: float, protocol: str = "http") -> None:
        key = (endpoint, protocol, status)
        children = self._request_children.get(key)
        if children is None:  # labels() costs a lock, a tuple of str() and a dict lookup per call: once per key
            children = self.requests.labels(endpoint, protocol, str(status)), self.latency.labels(endpoint)
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_rpc(self, endpoint: str, code: str, seconds: float) -> None:
        """The gRPC server's per-RPC hook: ``code`` is a ``grpc.StatusCode`` name."""
        self.observe_request(endpoint, GRPC_TO_HTTP.get(code, 500), seconds, "grpc")

    def observe_admission(self, inflight: int, queue_depth: int) -> None:
        """``ModelRuntime``'s ``on_admit`` hook: the worker's admitted requests and queued rows."""
        self.in_flight.set(inflight)
        self.queue_depth.set(queue_depth)

    def observe_batch(self, model: Any, rows: int, infer_seconds: float, max_wait_s: float) -> None:
        """``MicroBatcher``'s ``on_batch`` hook."""
        children = self._per_model(model)
        children[0].inc(rows)
        children[1].inc()
        batch_size, inference, queue_wait = children[9:]
        batch_size.observe(rows)
        inference.observe(infer_seconds)
        queue_wait.observe(max_wait_s)

    def observe_inference(
        self, model: Any, ok: bool, requests: int, queue_s: float, compute_s: float, total_s: float
    ) -> None:
        """``MicroBatcher``'s ``on_request`` hook (once per batch, times summed over its requests): the
        per-request half of Triton's statistics."""
        _, _, queue, compute, last, success, success_s, fail, fail_s = self._per_model(model)[:9]
        if ok:
            success.inc(requests)
            success_s.inc(total_s)
            queue.inc(queue_s)
            compute.inc(compute_s)
            last.set(time.time())
        else:
            fail.inc(requests)
            fail_s.inc(total_s)

    def _per_model(self, model: Any) -> tuple[Any, ...]:
        """Labelled children cached per (name, version): ``labels()`` costs a lock and a dict lookup each."""
        key = (model.card.name, str(model.card.version))
        children = self._children.get(key)
        if children is None:
            children = (
                self.inferences.labels(*key), self.executions.labels(*key), self.queue_seconds.labels(*key),
                self.compute_seconds.labels(*key), self.last_inference.labels(*key),
                self.model_requests.labels(*key, "success"), self.model_request_seconds.labels(*key, "success"),
                self.model_requests.labels(*key, "fail"), self.model_request_seconds.labels(*key, "fail"),
                self.batch_size.labels(key[0]), self.inference.labels(key[0]), self.queue_wait.labels(key[0]),
            )
            self._children[key] = children
        return children

    def model_statistics(self) -> dict[tuple[str, str], dict[str, float]]:
        """Per (model, version), summed over every worker process (their multiprocess files, as /metrics does):
        ``inference_count``, ``execution_count``, ``queue_s``, ``compute_s``, ``success``/``fail`` (+ ``_s``),
        ``last_inference`` (epoch seconds)."""
        out: dict[tuple[str, str], dict[str, float]] = {}
        for family in self._collect():
            for sample in family.samples:
                if sample.name.endswith("_created") or "model" not in sample.labels:
                    continue
                key = (sample.labels["model"], sample.labels["version"])
                entry = out.setdefault(key, {})
                if family.name in _STAT_COUNTERS:
                    field = _STAT_COUNTERS[family.name]
                elif family.name == "imgserve_model_requests":
                    field = sample.labels["outcome"]
                elif family.name == "imgserve_model_request_seconds":
                    field = sample.labels["outcome"] + "_s"
                else:
                    field = "last_inference"
                entry[field] = entry.get(field, 0.0) + sample.value if field != "last_inference" else max(
                    entry.get(field, 0.0), sample.value
                )
        return out

    def _collect(self) -> list[Any]:
        names = {*_STAT_COUNTERS, "imgserve_model_requests", "imgserve_model_request_seconds",
                 "imgserve_model_last_inference_timestamp_seconds"}
        path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if path:  # several workers: each writes its own files; merge them all
            from prometheus_client import CollectorRegistry
            from prometheus_client.multiprocess import MultiProcessCollector

            return [f for f in MultiProcessCollector(CollectorRegistry(), path).collect() if f.name in names]
        metrics = (self.inferences, self.executions, self.queue_seconds, self.compute_seconds,
                   self.model_requests, self.model_request_seconds, self.last_inference)
        return [f for m in metrics for f in m.collect()]

    def observe_canary_abort(self, model: str, version: int, reason: str) -> None:
        """``ModelSlot``'s ``on_canary_abort`` hook (only the worker that recorded the abort counts it)."""
        self.canary_aborts.labels(model, str(version)).inc()

    def observe_shadow(self, model: str, version: int, agreed: bool, production_conf: float, shadow_conf: float) -> None:
        """``ShadowRollout``'s compare hook."""
        v = str(version)
        self.shadow_compared.labels(model, v).inc()
        if agreed:
            self.shadow_agreed.labels(model, v).inc()
        self.shadow_confidence.labels(model, v, "production").inc(production_conf)
        self.shadow_confidence.labels(model, v, "shadow").inc(shadow_conf)

    def observe_shadow_shed(self, model: str, version: int) -> None:
        self.shadow_shed.labels(model, str(version)).inc()

    def observe_load_failure(self, model: str) -> None:
        """``ModelSlot``'s ``on_load_error`` hook."""
        self.load_failures.labels(model).inc()

    def observe_fallback(self, model: str, active: bool) -> None:
        """``ModelSlot``'s ``on_fallback`` hook."""
        self.fallback.labels(model).set(1 if active else 0)

    def observe_drift(self, model: str, version: int, signal: str, value: float) -> None:
        """``DriftMonitor``'s ``on_psi`` hook."""
        self.drift_psi.labels(model, str(version), signal).set(value)

    def observe_swap(self, old_label: str | None, new_label: str, seconds: float, provider: str = "") -> None:
        """``ModelSlot``'s ``on_swap`` hook; labels are ``name:version:variant``."""
        name, version, variant = new_label.split(":", 2)
        if old_label:
            self.model_info.labels(*old_label.split(":", 2), self._providers.get(name, provider)).set(0)
        self._providers[name] = provider
        self.model_info.labels(name, version, variant, provider).set(1)
        self.ready.set(1)
        self.load_failures.labels(name)  # the series exists (at 0) from the first load on, so increase() sees a failure
        self.swaps.labels(name).inc()
        self.load_seconds.observe(seconds)
