"""gRPC health (``grpc.health.v1.Health``, the standard service from grpcio-health-checking) mirroring
``/readyz``: SERVING while the model is loaded and the worker is not draining, NOT_SERVING otherwise, so
Kubernetes ``grpc:`` probes, ``grpc_health_probe`` and client-side health checking see what HTTP probes see.

Both the server as a whole (service ``""``) and ``inference.GRPCInferenceService`` are reported. The status is
pushed to the stock servicer (which also serves ``Watch``) by :meth:`ReadinessHealth.sync`: at start, every
``interval_s`` (readiness changes when a model loads), and at once when the worker starts draining.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

log = logging.getLogger(__name__)

SERVICES = ("", "inference.GRPCInferenceService")
_STATUS = health_pb2.HealthCheckResponse


class ReadinessHealth:
    def __init__(self, ready: Callable[[], bool], interval_s: float = 0.5):
        self.servicer = health_aio.HealthServicer()
        self._ready, self.interval_s = ready, interval_s
        self._serving: bool | None = None
        self._task: asyncio.Task[None] | None = None

    def attach(self, server: grpc.aio.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)

    async def sync(self) -> bool:
        """Publish the current readiness; returns it."""
        try:
            serving = bool(self._ready())
        except Exception:  # a readiness check that fails means not ready
            serving = False
        if serving != self._serving:
            status = _STATUS.SERVING if serving else _STATUS.NOT_SERVING
            # ``set`` awaits (it wakes watchers), so a Check can land between two services: the server as a
            # whole ("") is SERVING only once every service is, and NOT_SERVING before any of them is.
            for service in reversed(SERVICES) if serving else SERVICES:
                await self.servicer.set(service, status)
            if self._serving is not None:
                log.info("gRPC health: %s", _STATUS.ServingStatus.Name(status))
            self._serving = serving
        return serving

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._follow(), name="grpc-health")

    def sync_soon(self) -> None:
        """From a synchronous callback on the loop (the drain's): publish now, not at the next tick."""
        asyncio.get_running_loop().create_task(self.sync())

    async def _follow(self) -> None:
        while True:
            await self.sync()
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.servicer.enter_graceful_shutdown()  # NOT_SERVING for anyone still watching
