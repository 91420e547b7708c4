"""The dashboard: HTML pages served by the admin runner, plus the few JSON endpoints only pages need.

Pages are static shells (Jinja2 layout, no data in them); their scripts call the admin JSON API with the
bearer token that the login page keeps in ``sessionStorage``. So the pages themselves need no auth, every
read and write goes through the same token check as the API, and no cookie exists that a forged cross-site
request could ride on. A strict Content-Security-Policy (scripts and styles from this origin only, no inline
script) keeps injected markup from running code that could read the token.

Endpoints added here (all behind the token, JSON unless said otherwise):
``GET /models/{name}/overview`` (versions with normalised metrics and artifacts),
``GET /models/{name}/versions/{v}/confusion.png``, ``POST /models/{name}/versions/{v}/gradcam``,
``GET /serving/metrics`` (live figures from the service's ``/metrics``), ``POST /serving/predict`` and
``GET /serving/model`` (proxied to the inference service, so the browser needs no CORS). Canary and shadow
routes and ``GET /models/{name}/rollout`` live in :mod:`admin.rollouts`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import APIRouter, Request
from fastapi.params import Depends
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.datastructures import UploadFile

from inference.errors import InvalidInput, NotFound
from inference.imagecodec import decode_image
from inference.preprocess import preprocess_images
from inference.registry import KERAS_FILE
from serving.edge import check_length, read_body, read_upload

from . import confusion
from .gradcam import GradCamWorker, KerasModelMissing, overlay, png_data_url
from .requests import ARCHITECTURES, VersionPath
from .rollouts import build_rollout_router
from .serving_metrics import MetricsPoller, ServiceUnreachable
from .versions import version_view

if TYPE_CHECKING:
    from .app import AdminState

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png",
                ".ico": "image/x-icon", ".txt": "text/plain"}
MAX_IMAGE_BYTES = 20 * 1024 * 1024
PAGES = {"models": "Models", "training": "Training", "serving": "Serving", "rollouts": "Rollouts", "try": "Try it"}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _static_version() -> str:
    digest = hashlib.sha256()
    for p in sorted(STATIC_DIR.rglob("*")):
        if p.is_file():
            digest.update(p.name.encode() + p.read_bytes())
    return digest.hexdigest()[:10]


def build_router(state: AdminState, auth: Sequence[Depends]) -> APIRouter:
    settings = state.settings
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    poller = MetricsPoller(settings.service_url)
    gradcam = GradCamWorker()
    static_version = _static_version()

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        yield
        gradcam.shutdown()

    router = APIRouter(lifespan=lifespan)
    deps = list(auth)
    router.include_router(build_rollout_router(state, auth, poller))  # canary/shadow API + the Rollouts page's data

    # ---- pages -----------------------------------------------------------------------------------
    def page(request: Request, name: str) -> Response:
        context = {
            "page": name,
            "pages": PAGES,
            "title": PAGES.get(name, "Sign in"),
            "default_model": settings.model,
            "architectures": ARCHITECTURES,
            "v": static_version,
        }
        response = templates.TemplateResponse(request, f"{name}.html", context)
        response.headers.update(SECURITY_HEADERS)
        return response

    @router.get("/", include_in_schema=False)
    @router.get("/ui", include_in_schema=False)
    @router.get("/ui/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui/models", status_code=307)

    @router.get("/ui/login", include_in_schema=False)
    async def login_page(request: Request) -> Response:
        return page(request, "login")

    @router.get("/ui/{name}", include_in_schema=False)
    async def any_page(request: Request, name: str) -> Response:
        if name not in PAGES:
            raise NotFound(f"no dashboard page {name!r}")
        return page(request, name)

    @router.get("/ui/static/{path:path}", include_in_schema=False)
    async def static(path: str) -> FileResponse:
        target = (STATIC_DIR / path).resolve()
        if STATIC_DIR.resolve() not in target.parents or not target.is_file() or target.suffix not in STATIC_TYPES:
            raise NotFound("no such file")
        return FileResponse(target, media_type=STATIC_TYPES[target.suffix],
                            headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"})

    # ---- models ----------------------------------------------------------------------------------
    @router.get("/models/{name}/overview", dependencies=deps)
    def overview(name: str) -> dict[str, Any]:
        """Everything the Models page shows, normalised: metrics in one shape whatever training wrote.
        A plain ``def``: FastAPI runs it in its thread pool (on an s3:// registry it makes HTTP calls)."""
        registry = state.registry
        versions = registry.list_versions(name)
        if not versions:
            raise NotFound(f"model {name!r} has no versions")
        raw = registry.aliases(name)
        aliases = {k: v for k, v in raw.items() if k != "history"}
        return {
            "name": name,
            "models": registry.list_models(),
            "aliases": aliases,
            "history": list(reversed(raw.get("history", [])))[:50],
            "versions": [version_view(state, name, v, aliases) for v in versions],
        }

    @router.get("/models/{name}/versions/{version}/confusion.png", dependencies=deps)
    def confusion_png(name: str, version: VersionPath) -> Response:  # registry I/O: in the thread pool
        v = state.registry.resolve(name, version)
        png_name = confusion.find_png(state.registry.version_files(name, v))
        png = state.registry.fetch(name, v, png_name) if png_name else None
        if png is not None:
            return FileResponse(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})
        card = state.registry.card(name, v)
        matrix = confusion.find_matrix(card.metrics, len(card.labels))
        if matrix is None:
            raise NotFound(f"version {v} of {name} has no confusion matrix")
        return Response(confusion.render_png(matrix, card.labels), media_type="image/png",
                        headers={"Cache-Control": "private, max-age=3600"})

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

    # ---- serving ---------------------------------------------------------------------------------
    @router.get("/serving/metrics", dependencies=deps)
    async def serving_metrics(window: float | None = None) -> dict[str, Any]:
        return await poller.summary(window)

    @router.get("/serving/model", dependencies=deps)
    async def serving_model() -> JSONResponse:
        return await _proxy("GET", "/model")

    @router.post("/serving/predict", dependencies=deps)
    async def serving_predict(request: Request) -> JSONResponse:
        data, fields = await _read_image(request)
        top_k = fields.get("top_k") or request.query_params.get("top_k") or "5"
        upload_name = fields.get("_filename") or "image"
        return await _proxy(
            "POST", "/predict", params={"top_k": top_k},
            files={"image": (upload_name, data, fields.get("_content_type") or "application/octet-stream")},
        )

    async def _proxy(method: str, path: str, **kwargs: Any) -> JSONResponse:
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

    return router


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
