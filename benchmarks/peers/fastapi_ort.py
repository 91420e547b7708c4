"""Peer: plain FastAPI + ONNX Runtime, batch 1, in a thread pool (the common hand-written baseline).

Knobs: ``--processes`` uvicorn processes (default 1), no access log; each request is decoded and run alone
(batch 1) in a thread from a pool of ``--workers`` threads per process (default: one per core), all sharing the
process's one ORT session with ``--intra-op-threads`` (default 1). ``--grpc-port`` adds an Open Inference Protocol ``ModelInfer`` endpoint (BYTES ``image``) on the same
pool, so this file also stands in for imgserve's HTTP/gRPC contract in the harness's own tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from inference.errors import ImgServeError, InvalidInput

from .common import (
    decode_to_pixels,
    load_classifier,
    model_info,
    peer_parser,
    predictions,
    quiet_logs,
    to_input,
)


def create_app(classifier: Any, workers: int, grpc_port: int = 0) -> FastAPI:
    card = classifier.card
    limiter = anyio.CapacityLimiter(workers)

    def infer(images: list[bytes]) -> np.ndarray:
        pixels = np.stack([decode_to_pixels(d, card) for d in images])
        return classifier.predict(to_input(pixels, card))

    async def run(images: list[bytes]) -> np.ndarray:
        return await anyio.to_thread.run_sync(infer, images, limiter=limiter)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        server = await start_grpc(run, card, grpc_port) if grpc_port else None
        yield
        if server is not None:
            await server.stop(grace=1.0)

    app = FastAPI(lifespan=lifespan)

    @app.exception_handler(ImgServeError)
    async def _error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ImgServeError)
        return JSONResponse(exc.to_dict(), status_code=exc.http_status)

    async def files(request: Request, field: str) -> list[bytes]:
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form()
            return [await f.read() for f in form.getlist(field) if hasattr(f, "read")]
        return [await request.body()]

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        images = await files(request, "image")
        if len(images) != 1:
            raise InvalidInput("send one image (multipart field 'image' or a raw image/* body)")
        (one,) = predictions(await run(images), card)
        return JSONResponse(one)

    @app.post("/predict_batch")
    async def predict_batch(request: Request) -> JSONResponse:
        images = await files(request, "images")
        if not images:
            raise InvalidInput("send images in the multipart field 'images'")
        return JSONResponse({"predictions": predictions(await run(images), card)})

    @app.get("/model")
    async def model() -> dict[str, Any]:
        return model_info(classifier)

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    return app


async def start_grpc(run: Any, card: Any, port: int) -> Any:
    """A minimal KServe v2 ``GRPCInferenceService`` (tritonclient's generated servicer) on ``port``."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
        async def ServerLive(self, request, context):  # noqa: N802 - gRPC method names
            return service_pb2.ServerLiveResponse(live=True)

        async def ServerReady(self, request, context):  # noqa: N802
            return service_pb2.ServerReadyResponse(ready=True)

        async def ModelReady(self, request, context):  # noqa: N802
            return service_pb2.ModelReadyResponse(ready=request.name == card.name)

        async def ModelInfer(self, request, context):  # noqa: N802
            try:
                probs = await run(_bytes_input(request))
            except ImgServeError as exc:
                await context.abort(getattr(grpc.StatusCode, exc.grpc_code), exc.message)
            resp = service_pb2.ModelInferResponse(model_name=card.name, model_version=str(card.version))
            out = resp.outputs.add()
            out.name, out.datatype = "probabilities", "FP32"
            out.shape.extend(probs.shape)
            resp.raw_output_contents.append(np.ascontiguousarray(probs, dtype="<f4").tobytes())
            labels = resp.outputs.add()
            labels.name, labels.datatype = "label", "BYTES"
            labels.shape.append(probs.shape[0])
            names = [card.labels[i].encode() for i in probs.argmax(axis=1)]
            resp.raw_output_contents.append(b"".join(struct.pack("<I", len(n)) + n for n in names))
            return resp

    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server


def _bytes_input(request: Any) -> list[bytes]:
    if not request.inputs or request.inputs[0].datatype != "BYTES":
        raise InvalidInput("expected one BYTES input 'image'")
    if request.raw_input_contents:
        raw, out, off = request.raw_input_contents[0], [], 0
        while off + 4 <= len(raw):
            (n,) = struct.unpack_from("<I", raw, off)
            out.append(raw[off + 4 : off + 4 + n])
            off += 4 + n
        return out
    return list(request.inputs[0].contents.bytes_contents)


ARGS_ENV = "IMGSERVE_FASTAPI_PEER_ARGS"  # how main() hands its arguments to the processes uvicorn spawns


def app_from_env() -> FastAPI:
    """uvicorn's app factory in each of several processes (``--processes`` > 1)."""
    args = json.loads(os.environ[ARGS_ENV])
    quiet_logs()
    classifier = load_classifier(Path(args["models_dir"]), args["model"], args["version"], args["variant"],
                                 args["intra_op_threads"])
    return create_app(classifier, args["workers"], args["grpc_port"])


def main() -> None:
    p = peer_parser(__doc__.splitlines()[0])
    p.add_argument("--grpc-port", type=int, default=0)
    args = p.parse_args()
    quiet_logs()
    import uvicorn

    options = {"host": args.host, "port": args.port, "access_log": False, "log_level": "warning"}
    if args.processes > 1:  # uvicorn needs an import string to start several processes
        os.environ[ARGS_ENV] = json.dumps({**vars(args), "models_dir": str(args.models_dir)})
        uvicorn.run("benchmarks.peers.fastapi_ort:app_from_env", factory=True, workers=args.processes, **options)
        return
    classifier = load_classifier(args.models_dir, args.model, args.version, args.variant, args.intra_op_threads)
    app = create_app(classifier, args.workers, args.grpc_port)
    uvicorn.run(app, workers=1, **options)


if __name__ == "__main__":
    main()
