"""TEST STAND-IN for the inference service — not the product.

A minimal FastAPI app over the real ``serving.runtime.ModelRuntime`` with the contract's ``POST /predict``,
``GET /model``, ``POST /reload``, ``/livez``, ``/readyz`` and a Prometheus ``/metrics`` shaped like the real
service's. ``python -m tests.e2e.harness serve`` runs it (``IMGSERVE_E2E_SERVICE=harness``); the default is
the real ``bentoml serve .`` (:func:`tests.e2e.harness.inference_command`).
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

if TYPE_CHECKING:
    from serving.runtime import ModelRuntime
    from serving.settings import ServeSettings


class _Series:
    """The Prometheus series the dashboard reads, named and labelled as the real service's."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = reg = CollectorRegistry()
        self.requests = Counter("imgserve_requests", "requests", ["endpoint", "status"], registry=reg)
        self.latency = Histogram("imgserve_request_duration_seconds", "latency", ["endpoint"], registry=reg,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
        self.batch = Histogram("imgserve_batch_size", "rows per run", registry=reg, buckets=(1, 2, 4, 8, 16, 32, 64))
        self.queue = Gauge("imgserve_queue_depth", "rows waiting", registry=reg)
        self.inflight = Gauge("imgserve_requests_in_flight", "requests in progress", registry=reg)
        self.info = Gauge("imgserve_model_info", "served version", ["model", "version", "variant"], registry=reg)

    def on_swap(self, old: str | None, new: str, seconds: float, provider: str = "") -> None:
        if old:
            self.info.labels(*old.split(":", 2)).set(0)
        self.info.labels(*new.split(":", 2)).set(1)


def create_inference_app(settings: Any = None) -> Any:
    from inference.errors import ImgServeError
    from serving.runtime import ModelRuntime
    from serving.settings import ServeSettings

    settings = settings or ServeSettings()
    series = _Series()
    runtime = ModelRuntime(settings, on_batch=lambda m, rows, s, w: series.batch.observe(rows),
                           on_swap=series.on_swap)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        await runtime.start()
        yield
        await runtime.stop()

    app = FastAPI(title="imgserve e2e stand-in service", lifespan=lifespan)
    _observe_requests(app, runtime, series)

    @app.exception_handler(ImgServeError)
    async def _err(_: Request, exc: ImgServeError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.http_status)

    _add_inference_routes(app, runtime, settings)
    _add_probe_routes(app, runtime, series)
    return app


def _observe_requests(app: FastAPI, runtime: ModelRuntime, series: _Series) -> None:
    """Count, time and track in-flight requests (not the probes and scrapes), as the real service does."""

    @app.middleware("http")
    async def observe(request: Request, call_next):  # noqa: ANN001, ANN202
        path = request.url.path
        if path in ("/metrics", "/livez", "/readyz"):
            return await call_next(request)
        t0 = time.perf_counter()
        series.inflight.inc()
        try:
            response = await call_next(request)
        finally:
            series.inflight.dec()
        series.requests.labels(path, str(response.status_code)).inc()
        series.latency.labels(path).observe(time.perf_counter() - t0)
        series.queue.set(runtime.batcher.queue_depth)
        return response


def _add_inference_routes(app: FastAPI, runtime: ModelRuntime, settings: ServeSettings) -> None:
    from inference.errors import InvalidInput

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        top_k = request.query_params.get("top_k")
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form()
            upload = form.get("image")
            if upload is None or isinstance(upload, str):
                raise InvalidInput("send the image as the multipart field 'image'")
            data = await upload.read()
            top_k = top_k or form.get("top_k")
        else:
            data = await request.body()
        k = int(top_k or settings.default_top_k)
        result = await runtime.classify_images([data])
        top = result.top_k(k)[0]
        return {"label": top[0]["label"], "score": top[0]["score"], "top_k": top,
                "model": {"name": result.card.name, "version": result.card.version, "variant": result.model.variant}}

    @app.get("/model")
    async def model() -> dict[str, Any]:
        m = runtime.model
        return {"name": m.card.name, "version": m.card.version, "variant": m.variant, "labels": list(m.card.labels)}

    @app.post("/reload")
    async def reload() -> dict[str, Any]:
        return await runtime.reload()


def _add_probe_routes(app: FastAPI, runtime: ModelRuntime, series: _Series) -> None:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    @app.get("/livez")
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        return JSONResponse({"ready": runtime.ready}, status_code=200 if runtime.ready else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(series.registry), media_type=CONTENT_TYPE_LATEST)
