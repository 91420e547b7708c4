"""imgserve's BentoML service: `bentoml serve .` (reads bentofile.yaml) or `imgserve serve`.

The deployment story, top to bottom:
1. Settings come from the environment (``IMGSERVE_*``), once, when BentoML imports this file.
2. A FastAPI app is mounted for the HTTP API; its routes are methods of the service class, so they reach
   the worker's one :class:`ModelRuntime` through ``self``.
3. On startup each worker loads and warms the production version, then starts the micro-batcher and the
   alias watch; ``/readyz`` says ready only after that.
4. SIGTERM drains a worker: ``/readyz`` 503 at once, requests still answered (``Connection: close``) until
   the balancers have gone, then in-flight work finishes and the worker exits within ``IMGSERVE_DRAIN_S``.
5. Requests are decoded off the event loop, batched by our own batcher (bounded queue: overload is a fast
   503 + Retry-After), run by ONNX Runtime; a newly promoted version is swapped in without dropping any.
BentoML adds ``/livez``, ``/readyz`` and ``/metrics`` (our metrics from serving/metrics.py included).
"""

from __future__ import annotations

import atexit
import gc
import logging
import sys

import bentoml
from fastapi import Request
from fastapi.responses import JSONResponse

from serving.http import MODEL_OPENAPI, PREDICT_BATCH_OPENAPI, PREDICT_OPENAPI, HttpFrontend, create_app
from serving.lean import HotRoutes, lean
from serving.lifecycle import CloseWhenDraining, Drain, forget_dead_workers
from serving.settings import ServeSettings
from serving.uvicorn_config import configure_uvicorn

settings = ServeSettings.from_env()
# Before BentoML's worker configures uvicorn (it imports this file first): our connection edge (header limits,
# timeouts, lingering close, connections per worker) and a keep-alive that outlives the clients' own
# (serving/uvicorn_config.py).
configure_uvicorn(settings.keep_alive_s, settings.connection_limits())
app = create_app(settings)
drain = Drain(settings.drain_s)  # this process's SIGTERM handling, installed by the worker's startup hook
# BentoML's arbiter (`bentoml serve`, PID 1 in the image) imports this file too. At exit, Python's final
# garbage collection walks everything those imports built: 2-4 s of a loaded 2-vCPU machine after the last
# worker had gone (py-spy: gc_collect_main). Frozen objects are skipped; nothing needs finalizing.
atexit.register(gc.freeze)


def _frontend() -> HttpFrontend:
    """The worker's front end. The routes below are plain functions, not methods of the service class: BentoML
    would hand them ``self`` through ``Depends(get_current_service)``, a sync dependency that FastAPI runs on a
    worker thread per request, and overriding it (``app.dependency_overrides``) makes FastAPI rebuild the
    dependency's signature (``inspect.signature`` + annotation ``eval``) on every request: ~10 % of the loop's
    CPU. A global read costs nothing."""
    return bentoml.get_current_service().http


def tune_gc(gen0_threshold: int) -> None:
    """Keep Python's cyclic GC off the request path. Requests make no reference cycles, but with dozens in
    flight the container objects they hold (ASGI scopes, middleware closures, coroutines) keep crossing the
    default gen-0 threshold of 700 allocations: gen-0 collections promote them, and every few thousand
    requests a full collection walks the whole heap (BentoML + OpenTelemetry + pydantic: ~260k objects) for
    70-180 ms -- that was our p99 at c=64, and ~1/3 of the worker's CPU. So: freeze what start-up built
    (never collected again) and collect young objects less often."""
    gc.collect()
    gc.freeze()
    if gen0_threshold:
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(gen0_threshold, gen1, gen2)


@bentoml.service(name="imgserve", **settings.service_config())
@bentoml.asgi_app(app, path="/")
class ImgServe:
    def __init__(self) -> None:
        from serving.metrics import ServingMetrics  # imported in the worker, after PROMETHEUS_MULTIPROC_DIR
        from serving.runtime import ModelRuntime  # onnxruntime: only in the worker, not in the arbiter

        for name in ("serving", "inference", "imgserve"):
            logging.getLogger(name).setLevel(settings.log_level)
        from serving.uvicorn_config import effective_keep_alive

        keep_alive = effective_keep_alive()
        logging.getLogger("serving").info(
            "HTTP keep-alive: %s", f"{keep_alive} s" if keep_alive else "set by bentoml serve --timeout-keep-alive"
        )
        metrics = ServingMetrics.get()
        # Rate limits, prediction log, drift signals (docs/operations.md), all optional.
        from serving.ops import LiveOps

        self.ops = LiveOps(settings, metrics)
        self.runtime = ModelRuntime(
            settings, on_batch=metrics.observe_batch, on_swap=self.ops.on_swap, on_admit=metrics.observe_admission,
            on_request=metrics.observe_inference, on_classified=self.ops.observe,
            on_load_error=metrics.observe_load_failure, on_fallback=metrics.observe_fallback,
            on_canary_abort=metrics.observe_canary_abort, on_shadow=(metrics.observe_shadow, metrics.observe_shadow_shed),
            rate_limiter=self.ops.limiter,
        )
        self.http = HttpFrontend(self.runtime, settings)
        self.grpc = None
        # Open Inference Protocol (KServe v2) REST under /v2, over the same runtime and batcher as /predict;
        # added here, in the worker, so BentoML's arbiter never imports numpy/ONNX Runtime to read the config.
        from serving.oip_rest import build_router

        app.include_router(build_router(lambda: self.runtime))

    @bentoml.on_startup
    async def load_model(self) -> None:
        drain.install()  # SIGTERM drains this worker (serving/lifecycle.py); uvicorn's handler is set by now
        drain.on_drain(self.ops.not_ready)  # imgserve_ready 0 while draining (the ReplicaNotReady alert)
        forget_dead_workers()  # a worker killed -9 before this one left its live gauges behind
        await self.runtime.start()  # load + warm before the worker takes traffic
        tune_gc(settings.gc_threshold)
        if settings.grpc_port:  # OIP gRPC on this worker's event loop, sharing the runtime and batcher
            from serving.metrics import ServingMetrics
            from serving.oip_grpc import start_grpc_server

            # binds where BentoML bound HTTP unless IMGSERVE_GRPC_HOST says otherwise; token and TLS as on HTTP
            host, security = settings.grpc_endpoint(sys.argv)
            self.grpc = grpc = await start_grpc_server(
                self.runtime, host, settings.grpc_port, on_rpc=ServingMetrics.get().observe_rpc, security=security,
                ready=self.ready,
            )
            drain.on_drain(grpc.health.sync_soon)
            drain.on_close(grpc.stop)

    @bentoml.on_shutdown
    async def unload_model(self) -> None:
        if not await drain.wait_closed() and self.grpc is not None:  # no drain ran (SIGINT): stop it here
            await self.grpc.stop(drain.finish_s)
        await self.runtime.stop()
        self.ops.close()  # flushes the prediction log

    def ready(self) -> bool:
        """/readyz and gRPC health: the model is loaded and warm, and the worker is not draining."""
        return self.runtime.ready and not drain.draining

    async def __is_ready__(self) -> bool:  # async: BentoML would run a sync one on a thread per probe
        return self.ready()


# Every HTTP response says `Connection: close` while the worker drains (serving/lifecycle.py).
ImgServe.add_asgi_middleware(CloseWhenDraining, drain=drain)
# The hot routes go from here straight to our app, past BentoML's request context and routers (serving/lean.py).
ImgServe.add_asgi_middleware(HotRoutes, target=app)


@app.post("/predict", openapi_extra=PREDICT_OPENAPI, summary="Classify one image")
@lean  # called straight from serving/lean.py's middleware, past FastAPI's per-request layers
async def predict(request: Request) -> JSONResponse:
    return await _frontend().predict(request)


@app.post("/predict_batch", openapi_extra=PREDICT_BATCH_OPENAPI, summary="Classify several images")
@lean
async def predict_batch(request: Request) -> JSONResponse:
    return await _frontend().predict_batch(request)


@app.get("/model", openapi_extra=MODEL_OPENAPI, summary="The served model version's metadata")
async def model(request: Request) -> JSONResponse:
    return _frontend().model(request)


@app.get("/models", summary="Every served model (the first is the default of /predict)")
async def models(request: Request) -> JSONResponse:
    return _frontend().models(request)


@app.post("/reload", openapi_extra=MODEL_OPENAPI, summary="Re-read the production aliases now and hot-swap (admin)")
async def reload(request: Request) -> JSONResponse:
    return await _frontend().reload(request)
