"""imgserve's BentoML service: `bentoml serve .` (reads bentofile.yaml) or `imgserve serve`.

The deployment story, top to bottom:
1. Settings come from the environment (``IMGSERVE_*``), once, when BentoML imports this file.
2. A FastAPI app is mounted for the HTTP API; its routes are methods of the service class, so they reach
   the worker's one :class:`ModelRuntime` through ``self``.
3. On startup each worker loads and warms the production version, then starts the micro-batcher and the
   alias watch; ``/readyz`` says ready only after that.
4. Requests are decoded off the event loop, batched by our own batcher (bounded queue: overload is a fast
   503 + Retry-After), run by ONNX Runtime; a newly promoted version is swapped in without dropping any.
BentoML adds ``/livez``, ``/readyz`` and ``/metrics`` (our metrics from serving/metrics.py included).
"""

from __future__ import annotations

import logging

import bentoml
from fastapi import Request
from fastapi.responses import JSONResponse

from serving.http import PREDICT_BATCH_OPENAPI, PREDICT_OPENAPI, HttpFrontend, create_app
from serving.keepalive import apply_keep_alive
from serving.settings import ServeSettings

settings = ServeSettings.from_env()
# Before BentoML's worker configures uvicorn (it imports this file first): idle keep-alive connections are
# closed by the client, never under a client that is about to reuse one (serving/keepalive.py).
apply_keep_alive(settings.keep_alive_s)
app = create_app(settings)


async def _current_service() -> object:
    return bentoml.get_current_service()


# BentoML hands ``self`` to the routes below through ``Depends(get_current_service)``, a sync function that
# FastAPI would call on a worker thread for every request; the same lookup as a coroutine stays on the loop.
app.dependency_overrides[bentoml.get_current_service] = _current_service


@bentoml.service(name="imgserve", **settings.service_config())
@bentoml.asgi_app(app, path="/")
class ImgServe:
    def __init__(self) -> None:
        from serving.metrics import ServingMetrics  # imported in the worker, after PROMETHEUS_MULTIPROC_DIR
        from serving.runtime import ModelRuntime  # onnxruntime: only in the worker, not in the arbiter

        for name in ("serving", "inference", "imgserve"):
            logging.getLogger(name).setLevel(settings.log_level)
        from serving.keepalive import effective_keep_alive

        keep_alive = effective_keep_alive()
        logging.getLogger("serving").info(
            "HTTP keep-alive: %s", f"{keep_alive} s" if keep_alive else "set by bentoml serve --timeout-keep-alive"
        )
        metrics = ServingMetrics.get()
        self.runtime = ModelRuntime(settings, on_batch=metrics.observe_batch, on_swap=metrics.observe_swap)
        self.http = HttpFrontend(self.runtime, settings, metrics)
        self.grpc = None
        # Open Inference Protocol (KServe v2) REST under /v2, over the same runtime and batcher as /predict;
        # added here, in the worker, so BentoML's arbiter never imports numpy/ONNX Runtime to read the config.
        from serving.oip_rest import build_router

        app.include_router(build_router(lambda: self.runtime, max_inflight=settings.inflight_limit()))

    @bentoml.on_startup
    async def load_model(self) -> None:
        await self.runtime.start()  # load + warm before the worker takes traffic
        if settings.grpc_port:  # OIP gRPC on this worker's event loop, sharing the runtime and batcher
            from serving.metrics import ServingMetrics
            from serving.oip_grpc import start_grpc_server

            self.grpc = await start_grpc_server(
                self.runtime, settings.grpc_host, settings.grpc_port,
                on_rpc=ServingMetrics.get().observe_request, max_inflight=settings.inflight_limit(),
            )

    @bentoml.on_shutdown
    async def unload_model(self) -> None:
        if self.grpc is not None:
            await self.grpc.stop(5)
        await self.runtime.stop()

    def __is_ready__(self) -> bool:
        return self.runtime.ready

    @app.post("/predict", openapi_extra=PREDICT_OPENAPI, summary="Classify one image")
    async def predict(self, request: Request) -> JSONResponse:
        return await self.http.predict(request)

    @app.post("/predict_batch", openapi_extra=PREDICT_BATCH_OPENAPI, summary="Classify several images")
    async def predict_batch(self, request: Request) -> JSONResponse:
        return await self.http.predict_batch(request)

    @app.get("/model", summary="The served model version's metadata")
    async def model(self, request: Request) -> JSONResponse:
        return self.http.model(request)

    @app.post("/reload", summary="Re-read the production alias now and hot-swap (admin)")
    async def reload(self, request: Request) -> JSONResponse:
        return await self.http.reload(request)
