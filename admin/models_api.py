"""The admin API's model routes: list and compare a model's versions, promote one, roll production back.

Registry reads are plain ``def`` routes (FastAPI runs them in its thread pool) and writes go through
``asyncio.to_thread``: on an s3:// registry each is one or more HTTP round trips, never on the event loop.
After a promotion or a rollback the inference service is asked to reload (its alias watch would follow anyway).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.params import Depends

from inference.errors import InvalidInput, NotFound
from inference.registry import Registry

from .requests import (
    PromoteRequest,
    RollbackRequest,
    VersionPath,
    VersionRef,
    openapi_body,
    read_json,
)
from .versions import without_history

if TYPE_CHECKING:
    from .app import AdminState


def add_model_routes(app: FastAPI, state: AdminState, auth: list[Depends]) -> None:
    """``/models``, ``/models/{name}/versions[/{version}]``, ``/compare``, ``/promote`` and ``/rollback``."""
    _add_reads(app, state, auth)
    _add_alias_changes(app, state, auth)


def _add_reads(app: FastAPI, state: AdminState, auth: list[Depends]) -> None:
    @app.get("/models", dependencies=auth)
    def list_models() -> list[dict[str, Any]]:
        return [
            {"name": n, "versions": state.registry.list_versions(n), "aliases": _aliases(state.registry, n)}
            for n in state.registry.list_models()
        ]

    @app.get("/models/{name}/versions", dependencies=auth)
    def list_versions(name: str) -> dict[str, Any]:
        versions = state.registry.list_versions(name)
        if not versions:
            raise NotFound(f"model {name!r} has no versions")
        raw = state.registry.aliases(name)
        aliases = without_history(raw)
        return {
            "name": name,
            "aliases": aliases,
            "history": raw.get("history", []),
            "versions": [_version_summary(state.registry, name, v, aliases) for v in versions],
        }

    @app.get("/models/{name}/versions/{version}", dependencies=auth)
    def get_version(name: str, version: VersionPath) -> dict[str, Any]:
        v = state.registry.resolve(name, version)
        return state.registry.card(name, v).to_dict()

    @app.get("/models/{name}/compare", dependencies=auth)
    def compare(name: str, a: VersionRef, b: VersionRef = "production") -> dict[str, Any]:
        va, vb = state.registry.resolve(name, a), state.registry.resolve(name, b)
        ca, cb = state.registry.card(name, va), state.registry.card(name, vb)
        aliases = _aliases(state.registry, name)
        acc_a, acc_b = ca.metrics.get("accuracy", {}), cb.metrics.get("accuracy", {})
        return {
            "a": _version_summary(state.registry, name, va, aliases),
            "b": _version_summary(state.registry, name, vb, aliases),
            "accuracy_delta": {
                k: acc_a[k] - acc_b[k] for k in ("fp32", "int8") if isinstance(acc_a.get(k), float | int) and isinstance(acc_b.get(k), float | int)
            },
            "same_labels": ca.labels == cb.labels,
            "note": "metrics were measured on each version's own held-out set; use POST /promote with "
            "policy 'if-better' and a dataset to compare both on the same images",
        }


def _add_alias_changes(app: FastAPI, state: AdminState, auth: list[Depends]) -> None:
    @app.post("/models/{name}/promote", dependencies=auth, openapi_extra=openapi_body(PromoteRequest))
    async def promote(name: str, request: Request) -> dict[str, Any]:
        body = await read_json(request, PromoteRequest)
        version = await asyncio.to_thread(state.registry.resolve, name, body.version)
        decision = None
        if body.policy == "if-better":
            if not body.dataset:
                raise InvalidInput("policy 'if-better' needs a 'dataset' id to compare both versions on")
            from .policy import decide_registered, list_labelled_images

            images = list_labelled_images(state.datasets.images_dir(body.dataset))
            margin = state.settings.promote_margin if body.margin is None else body.margin
            verdict = await asyncio.to_thread(decide_registered, state.registry, name, version, images, policy="if-better", margin=margin)
            decision = verdict.to_dict()  # scoring both versions takes seconds: off the event loop
            if not decision["promote"]:
                return {"promoted": False, "decision": decision, "aliases": _aliases(state.registry, name)}
        reason = body.reason or (decision["reason"] if decision else "promoted via admin API")
        await asyncio.to_thread(state.registry.promote, name, version, reason=reason)
        return {
            "promoted": True,
            "decision": decision,
            "aliases": await asyncio.to_thread(_aliases, state.registry, name),
            "service": await state.notify_service(name),
        }

    @app.post("/models/{name}/rollback", dependencies=auth, openapi_extra=openapi_body(RollbackRequest))
    async def rollback(name: str, request: Request) -> dict[str, Any]:
        body = await read_json(request, RollbackRequest)
        await asyncio.to_thread(state.registry.rollback, name, body.to, reason=body.reason or "rollback via admin API")
        aliases = await asyncio.to_thread(_aliases, state.registry, name)
        return {"aliases": aliases, "service": await state.notify_service(name)}


def _aliases(registry: Registry, name: str) -> dict[str, Any]:
    return without_history(registry.aliases(name))


def _version_summary(registry: Registry, name: str, version: int, aliases: dict[str, Any]) -> dict[str, Any]:
    card = registry.card(name, version)
    return {
        "version": version,
        "created_at": card.created_at,
        "architecture": card.architecture,
        "labels": list(card.labels),
        "metrics": card.metrics,
        "parent_version": card.parent_version,
        "aliases": [k for k, v in aliases.items() if v == version],
    }
