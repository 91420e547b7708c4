"""Canary and shadow rollouts from the admin API and the dashboard's Rollouts page.

The alias changes are the registry's own (``Registry.set_canary`` / ``end_canary`` / ``set_shadow`` /
``end_shadow``), the same calls ``imgserve models canary|shadow`` makes: compare-and-swap on aliases.json, one
history event each. After a change the service is asked to reload (its alias poll would follow anyway).

``GET /models/{name}/rollout`` gathers what the panel shows: the aliases and weights, the canary events of the
history (automatic aborts carry the figures that triggered them) and the live figures from the service's
``/metrics`` (:mod:`admin.rollout_metrics`); when the service cannot be reached the registry half still answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.params import Depends

from inference.errors import NotFound

from .requests import (
    CanaryRequest,
    RolloutEndRequest,
    ShadowRequest,
    openapi_body,
    read_json,
)
from .rollout_metrics import rollout_figures
from .serving_metrics import MetricsPoller, ServiceUnreachable
from .versions import without_history

if TYPE_CHECKING:
    from .app import AdminState

ROLLOUT_EVENTS = ("canary", "canary-promote", "canary-abort", "shadow", "shadow-stop")


def build_rollout_router(state: AdminState, auth: Sequence[Depends], poller: MetricsPoller) -> APIRouter:
    router = APIRouter()
    deps = list(auth)
    registry = state.registry

    async def changed(name: str, change: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        aliases = await asyncio.to_thread(change, name, *args, **kwargs)
        return {"aliases": without_history(aliases),
                "service": await state.notify_service(name)}

    @router.post("/models/{name}/canary", dependencies=deps, openapi_extra=openapi_body(CanaryRequest))
    async def start_canary(name: str, request: Request) -> dict[str, Any]:
        body = await read_json(request, CanaryRequest)
        return await changed(name, registry.set_canary, body.version, body.weight,
                             reason=body.reason or f"canary at {body.weight:g} % via admin API")

    @router.post("/models/{name}/canary/{action}", dependencies=deps, openapi_extra=openapi_body(RolloutEndRequest))
    async def end_canary(name: str, action: str, request: Request) -> dict[str, Any]:
        if action not in ("promote", "abort"):
            raise NotFound(f"no canary action {action!r}: promote or abort")
        body = await read_json(request, RolloutEndRequest)
        return await changed(name, registry.end_canary, promote=action == "promote",
                             reason=body.reason or f"canary {action} via admin API")

    @router.post("/models/{name}/shadow", dependencies=deps, openapi_extra=openapi_body(ShadowRequest))
    async def start_shadow(name: str, request: Request) -> dict[str, Any]:
        body = await read_json(request, ShadowRequest)
        return await changed(name, registry.set_shadow, body.version, body.share,
                             reason=body.reason or f"shadow at {body.share:g} % via admin API")

    @router.post("/models/{name}/shadow/stop", dependencies=deps, openapi_extra=openapi_body(RolloutEndRequest))
    async def stop_shadow(name: str, request: Request) -> dict[str, Any]:
        body = await read_json(request, RolloutEndRequest)
        return await changed(name, registry.end_shadow, reason=body.reason or "shadow stopped via admin API")

    @router.get("/models/{name}/rollout", dependencies=deps)
    async def rollout(name: str) -> dict[str, Any]:
        raw = await asyncio.to_thread(registry.aliases, name)
        if not raw and not await asyncio.to_thread(registry.list_versions, name):
            raise NotFound(f"model {name!r} has no versions")
        weights = raw.get("weights") or {}
        events = [e for e in reversed(raw.get("history", [])) if e.get("action") in ROLLOUT_EVENTS]
        out: dict[str, Any] = {
            "name": name,
            "production": raw.get("production"),
            "canary": {"version": raw["canary"], "weight": weights.get("canary")} if raw.get("canary") else None,
            "shadow": {"version": raw["shadow"], "share": weights.get("shadow")} if raw.get("shadow") else None,
            "events": events[:50],
            "automatic_aborts": [e for e in events if e["action"] == "canary-abort"
                                 and str(e.get("reason", "")).startswith("automatic abort")],
            "live": None,
            "live_error": None,
        }
        try:
            await poller.summary()
            scrape = poller.latest
            out["live"] = rollout_figures(scrape, name) if scrape else None
        except ServiceUnreachable as exc:
            out["live_error"] = exc.message
        return out

    return router
