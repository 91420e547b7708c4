"""Before the model is loaded (or with no runtime at all) OIP says so: not ready, 503/UNAVAILABLE, never 500."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc.aio as grpcaio
from fastapi import FastAPI
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException

from inference.registry import Registry
from serving.oip_grpc import start_grpc_server
from serving.oip_rest import build_router
from serving.runtime import ModelRuntime
from serving.settings import ServeSettings
from tests.fixtures import register_tiny


def _runtime(root: Path) -> ModelRuntime:
    register_tiny(Registry(root))
    return ModelRuntime(
        ServeSettings(models_dir=root, model="tiny", lanes=1, decode_threads=1, poll_interval_s=0)
    )


def test_not_ready_over_rest_and_grpc(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path)  # never started: no model loaded

    async def main() -> None:
        app = FastAPI()
        app.include_router(build_router(lambda: runtime))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as http:
            assert (await http.get("/v2/health/live")).status_code == 200
            r = await http.get("/v2/health/ready")
            assert r.status_code == 503 and r.headers["Retry-After"] == "1"
            r = await http.post("/v2/models/tiny/infer", json={"inputs": []})
            assert r.status_code == 503 and "not loaded" in r.json()["error"] and "Retry-After" in r.headers
            assert (await http.get("/v2/models/tiny/ready")).status_code == 503
            assert (await http.get("/v2/models/other/ready")).status_code == 404

        rpcs: list[tuple[str, str]] = []
        server = await start_grpc_server(runtime, "127.0.0.1", 0, on_rpc=lambda e, c, s: rpcs.append((e, c)))
        client = grpcaio.InferenceServerClient(f"127.0.0.1:{server.port}")
        try:
            assert await client.is_server_live() and not await client.is_server_ready()
            assert not await client.is_model_ready("tiny")
            inp = grpcaio.InferInput("input", [1, 28, 28, 1], "UINT8")
            inp.set_data_from_numpy(np.zeros((1, 28, 28, 1), np.uint8))
            with pytest.raises(InferenceServerException) as info:
                await client.infer("tiny", [inp])
            assert info.value.status() == "StatusCode.UNAVAILABLE" and "not loaded" in info.value.message()
            # a raw stub, to see the retry-after trailer
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as raw:
                    await stub.ModelInfer(pb.ModelInferRequest(model_name="tiny"))
                assert raw.value.code() == grpc.StatusCode.UNAVAILABLE
                assert dict(raw.value.trailing_metadata())["retry-after"] == "1"
            assert ("grpc:ServerLive", "OK") in rpcs and ("grpc:ModelInfer", "UNAVAILABLE") in rpcs
        finally:
            await client.close()
            await server.stop(0)

    asyncio.run(main())


def test_no_runtime_yet_and_body_limits(tmp_path: Path) -> None:
    """``get_runtime`` may fail before the service has built its runtime; bodies are bounded."""
    runtime = _runtime(tmp_path)

    state: dict[str, ModelRuntime] = {}

    def get_runtime() -> ModelRuntime:
        return state["runtime"]  # KeyError until the service has built it

    async def main() -> None:
        app = FastAPI()
        app.include_router(build_router(get_runtime, max_body_bytes=1024))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as http:
            assert (await http.get("/v2/health/ready")).status_code == 503
            r = await http.get("/v2/models/tiny")
            assert (
                r.status_code == 503 and r.headers["Retry-After"] == "1" and "starting" in r.json()["error"]
            )
            state["runtime"] = runtime
            assert (await http.get("/v2/models/tiny")).status_code == 503  # built, not loaded yet
            await runtime.start()
            try:
                assert (await http.get("/v2/health/ready")).status_code == 200
                body = (
                    b'{"inputs": [{"name": "input", "shape": [1, 28, 28, 1], "datatype": "UINT8", "data": ['
                    + b"0, " * 783
                    + b"0]}]}"
                )
                r = await http.post("/v2/models/tiny/infer", content=body)
                assert r.status_code == 413 and "limit is 1024" in r.json()["error"]
                r = await http.post(
                    "/v2/models/tiny/infer", content=gzip.compress(body), headers={"Content-Encoding": "gzip"}
                )
                assert r.status_code == 413 and "decompressed" in r.json()["error"]
                r = await http.post(
                    "/v2/models/tiny/infer", content=b"{}", headers={"Content-Encoding": "br"}
                )
                assert r.status_code == 415
            finally:
                await runtime.stop()

    asyncio.run(main())
