"""The dashboard: the admin runner's HTML pages (:mod:`admin.pages`), plus the few JSON endpoints only pages need.

The pages need no auth (static shells; why in :mod:`admin.pages`); every read and write their scripts make
goes through the same token check as the API.

Endpoints added here (all behind the token, JSON unless said otherwise):
``GET /models/{name}/overview`` (versions with normalised metrics and artifacts),
``GET /models/{name}/versions/{v}/confusion.png``, ``POST /models/{name}/versions/{v}/gradcam``,
``GET /serving/metrics`` (live figures from the service's ``/metrics``), ``POST /serving/predict`` and
``GET /serving/model`` (proxied to the inference service, so the browser needs no CORS). Canary and shadow
routes and ``GET /models/{name}/rollout`` live in :mod:`admin.rollouts`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import APIRouter, Request
from fastapi.params import Depends
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.datastructures import UploadFile

from inference.errors import InvalidInput, NotFound
from inference.imagecodec import decode_image
from inference.preprocess import preprocess_images
from inference.registry import KERAS_FILE
from serving.edge import check_length, read_body, read_upload

from . import confusion
from .confusion_render import render_png
from .gradcam import GradCamWorker, KerasModelMissing, overlay, png_data_url
from .pages import add_page_routes
from .requests import VersionPath
from .rollouts import build_rollout_router
from .serving_metrics import MetricsPoller, ServiceUnreachable
from .versions import version_view, without_history

if TYPE_CHECKING:
    from .app import AdminState
    from .settings import AdminSettings

log = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 20 * 1024 * 1024


def build_router(state: AdminState, auth: Sequence[Depends]) -> APIRouter:
    poller = MetricsPoller(state.settings.service_url)
    gradcam = GradCamWorker()

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        yield
        gradcam.shutdown()

    router = APIRouter(lifespan=lifespan)
    deps = list(auth)
    router.include_router(build_rollout_router(state, auth, poller))  # canary/shadow API + the Rollouts page's data
    add_page_routes(router, state.settings)
    _add_model_views(router, state, deps)
    _add_gradcam_view(router, state, deps, gradcam)
    _add_serving_views(router, state.settings, deps, poller)
    return router


def _add_model_views(router: APIRouter, state: AdminState, deps: list[Depends]) -> None:
    """The Models page's data: a model's overview and a version's confusion matrix."""

    @router.get("/models/{name}/overview", dependencies=deps)
    def overview(name: str) -> dict[str, Any]:
        """Everything the Models page shows, normalised: metrics in one shape whatever training wrote.
        A plain ``def``: FastAPI runs it in its thread pool (on an s3:// registry it makes HTTP calls)."""
        registry = state.registry
        versions = registry.list_versions(name)
        if not versions:
            raise NotFound(f"model {name!r} has no versions")
        raw = registry.aliases(name)
        aliases = without_history(raw)
        return {
            "name": name,
            "models": registry.list_models(),
            "aliases": aliases,
            "history": list(reversed(raw.get("history", [])))[:50],
            "versions": [version_view(state, name, v, aliases) for v in versions],
        }

    @router.get("/models/{name}/versions/{version}/confusion.png", dependencies=deps)
    def confusion_png(name: str, version: VersionPath) -> Response:  # registry I/O: in the thread pool
        cache = {"Cache-Control": "private, max-age=3600"}  # a version's files never change
        v = state.registry.resolve(name, version)
        png_name = confusion.find_png(state.registry.version_files(name, v))
        png = state.registry.fetch(name, v, png_name) if png_name else None
        if png is not None:
            return FileResponse(png, media_type="image/png", headers=cache)
        card = state.registry.card(name, v)
        matrix = confusion.find_matrix(card.metrics, len(card.labels))
        if matrix is None:
            raise NotFound(f"version {v} of {name} has no confusion matrix")
        return Response(render_png(matrix, card.labels), media_type="image/png", headers=cache)


def _add_gradcam_view(router: APIRouter, state: AdminState, deps: list[Depends], gradcam: GradCamWorker) -> None:
    """The Try-it page's Grad-CAM: a version's Keras model explains one uploaded image."""

    @router.post("/models/{name}/versions/{version}/gradcam", dependencies=deps)
    async def explain(name: str, version: VersionPath, request: Request) -> dict[str, Any]:
        registry = state.registry
        v = registry.resolve(name, version)
        card = registry.card(name, v)
        keras_path = registry.fetch(name, v, KERAS_FILE)
        if keras_path is None:
            raise KerasModelMissing(
                f"version {v} of {name} has no {KERAS_FILE}: Grad-CAM needs the Keras model, and this version "
                "was registered with its ONNX files only"
            )
        data, fields = await _read_image(request)
        image = decode_image(data)
        x = preprocess_images([image], card.preprocessing)
        class_index = _class_index(fields, card.labels)
        t0 = time.perf_counter()
        result = await gradcam.explain(str(keras_path), x, class_index)
        seconds = time.perf_counter() - t0
        original, blended = overlay(image, result["cam"])
        probs = result["probabilities"]
        order = probs.argsort()[::-1][:5]
        idx = result["class_index"]
        labels = card.labels
        return {
            "model": name,
            "version": v,
            "class_index": idx,
            "label": labels[idx] if idx < len(labels) else str(idx),
            "score": float(probs[idx]),
            "layer": result["layer"],
            "method": result.get("method", "grad-cam"),
            "keras_top": [{"label": labels[i] if i < len(labels) else str(i), "score": float(probs[i])} for i in order],
            "original": png_data_url(original),
            "overlay": png_data_url(blended),
            "seconds": round(seconds, 3),
        }


def _add_serving_views(
    router: APIRouter, settings: AdminSettings, deps: list[Depends], poller: MetricsPoller
) -> None:
    """The Serving and Try-it pages' data: live figures, and the service's ``/model`` and ``/predict``."""

    @router.get("/serving/metrics", dependencies=deps)
    async def serving_metrics(window: float | None = None) -> dict[str, Any]:
        return await poller.summary(window)

    @router.get("/serving/model", dependencies=deps)
    async def serving_model() -> JSONResponse:
        return await _proxy(settings, "GET", "/model")

    @router.post("/serving/predict", dependencies=deps)
    async def serving_predict(request: Request) -> JSONResponse:
        data, fields = await _read_image(request)
        top_k = fields.get("top_k") or request.query_params.get("top_k") or "5"
        upload_name = fields.get("_filename") or "image"
        return await _proxy(
            settings, "POST", "/predict", params={"top_k": top_k},
            files={"image": (upload_name, data, fields.get("_content_type") or "application/octet-stream")},
        )


async def _proxy(settings: AdminSettings, method: str, path: str, **kwargs: Any) -> JSONResponse:
    """``method path`` on the inference service, its answer passed on (status, JSON body, Retry-After)."""
    if not settings.service_url:
        raise ServiceUnreachable("no inference service configured (IMGSERVE_SERVICE_URL)")
    url = settings.service_url.rstrip("/") + path
    t0 = time.perf_counter()
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            r = await client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        raise ServiceUnreachable(
            f"cannot reach the inference service at {settings.service_url}: {type(exc).__name__}"
        ) from None
    elapsed_ms = round(1e3 * (time.perf_counter() - t0), 1)
    try:
        body = r.json()
    except ValueError:
        body = {"error": r.text[:300] or f"HTTP {r.status_code}", "type": "service_error"}
    if isinstance(body, dict):
        body.setdefault("round_trip_ms", elapsed_ms)
    headers = {"Retry-After": r.headers["retry-after"]} if "retry-after" in r.headers else None
    return JSONResponse(body, status_code=r.status_code, headers=headers)


async def _read_image(request: Request) -> tuple[bytes, dict[str, str]]:
    """The ``image`` field of a multipart form (or a raw ``image/*`` body) and the other form fields."""
    ctype = request.headers.get("content-type", "")
    fields: dict[str, str] = {}
    check_length(request, MAX_IMAGE_BYTES + 64 * 1024, "the image")  # 413 before reading
    if ctype.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=20, max_part_size=MAX_IMAGE_BYTES)
        upload = form.get("image")
        for k, val in form.multi_items():
            if isinstance(val, str):
                fields[k] = val
        if not isinstance(upload, UploadFile):
            raise InvalidInput("send the image as the multipart field 'image'")
        data = await read_upload(upload, MAX_IMAGE_BYTES, "the image")
        fields["_filename"] = upload.filename or "image"
        fields["_content_type"] = upload.content_type or "application/octet-stream"
    elif ctype.startswith("image/") or ctype == "application/octet-stream":
        data = await read_body(request, MAX_IMAGE_BYTES, "the image")
        fields["_content_type"] = ctype
    else:
        raise InvalidInput("upload an image: multipart field 'image', or an image/* body", http_status=415)
    if not data:
        raise InvalidInput("the image is empty")
    return data, fields


def _class_index(fields: dict[str, str], labels: Sequence[str]) -> int | None:
    if fields.get("label"):
        if fields["label"] not in labels:
            raise InvalidInput(f"unknown label {fields['label']!r}")
        return list(labels).index(fields["label"])
    raw = fields.get("class_index", "")
    if raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()) or int(raw) >= len(labels):  # "²".isdigit(), but int("²") raises
        raise InvalidInput(f"class_index must be 0..{len(labels) - 1}")
    return int(raw)
