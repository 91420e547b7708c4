"""A real OIP server for tests: ModelRuntime + gRPC server + the REST router under uvicorn, all on one
event loop in a background thread (as in the BentoML worker), on free localhost ports."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine
from typing import Any

import uvicorn
from fastapi import FastAPI

from serving.metrics import ServingMetrics
from serving.oip_grpc import GrpcServer, start_grpc_server
from serving.oip_rest import build_router
from serving.runtime import ModelRuntime
from serving.settings import ServeSettings


class OipTestServer:
    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        metrics = ServingMetrics.get()  # the real hooks: ModelStatistics reads what they count
        self.runtime = ModelRuntime(
            settings, on_batch=metrics.observe_batch, on_swap=metrics.observe_swap, on_request=metrics.observe_inference
        )
        self.grpc: GrpcServer | None = None
        self._http: uvicorn.Server | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="oip-test-loop", daemon=True)
        self.http_port = 0

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        """Run ``coro`` on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def grpc_url(self) -> str:
        assert self.grpc is not None
        return f"127.0.0.1:{self.grpc.port}"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def start(self) -> OipTestServer:
        self._thread.start()
        self.call(self._start())
        return self

    async def _start(self) -> None:
        await self.runtime.start()
        self.grpc = await start_grpc_server(self.runtime, "127.0.0.1", 0)
        app = FastAPI()
        app.include_router(build_router(lambda: self.runtime))
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP; without it
        # every keep-alive response waits ~40 ms for a delayed ACK (Nagle).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.http_port = sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._http = uvicorn.Server(config)
        self._http_task = asyncio.create_task(self._http.serve(sockets=[sock]))
        while not self._http.started:
            await asyncio.sleep(0.01)

    def stop(self) -> None:
        try:
            self.call(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()

    async def _stop(self) -> None:
        if self._http is not None and self._http_task is not None:
            self._http.should_exit = True
            await self._http_task
        if self.grpc is not None:
            await self.grpc.stop(grace=1)
        await self.runtime.stop()
