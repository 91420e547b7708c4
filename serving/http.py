"""The HTTP front end: reads images out of requests, calls the shared runtime, writes JSON; maps errors once.

``service.py`` mounts :func:`create_app` on the BentoML service and forwards each route to
:class:`HttpFrontend`. Everything here is request plumbing: decoding, batching and model swaps belong to
:class:`serving.runtime.ModelRuntime`.

Errors are rendered by serving/edge.py (the one JSON shape, shared with OIP REST and the admin runner);
anything unexpected becomes a generic 500 whose traceback goes to the server log only (:class:`RequestObserver`).
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse

from inference.errors import (
    ClientDisconnected,
    InvalidInput,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)

from .edge import (
    check_admin,
    check_length,
    check_token,
    error_response,
    install_error_handlers,
    internal_error_response,
    read_body,
)
from .lean import LeanRoutes, LeanTable
from .multipart import read_form
from .ratelimit import http_client
from .settings import ServeSettings

if TYPE_CHECKING:
    from .runtime import Classification, ModelRuntime

log = logging.getLogger(__name__)
access_log = logging.getLogger("imgserve.access")

IMAGE_FIELDS = ("image", "file")  # /predict: one file under either name
BATCH_FIELD = "images"  # /predict_batch: repeated
RAW_TYPES = ("application/octet-stream",)  # plus image/*
MULTIPART_SLACK = 64 * 1024  # headers and boundaries around the files
FAST_FORM_BYTES = 1024 * 1024  # multipart bodies up to this size are read whole and parsed by serving.multipart
MAX_TOP_K = 1000
# Request bodies for /docs: the routes read the body themselves (multipart or raw), so FastAPI cannot infer them.
_TOP_K_PARAM = {"name": "top_k", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1}}
_MODEL_PARAM = {  # IMGSERVE_MODELS: which served model answers (default: the first)
    "name": "model", "in": "query", "required": False, "schema": {"type": "string"},
}
MODEL_OPENAPI = {"parameters": [_MODEL_PARAM]}
PREDICT_OPENAPI = {
    "parameters": [_TOP_K_PARAM, _MODEL_PARAM],
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"image": {"type": "string", "format": "binary"}, "top_k": {"type": "integer"}},
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        }
    }
}
PREDICT_BATCH_OPENAPI = {
    "parameters": [_TOP_K_PARAM, _MODEL_PARAM],
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "images": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "top_k": {"type": "integer"},
                    },
                }
            }
        }
    }
}
class RequestObserver:
    """Pure ASGI middleware: per request one metrics sample and at most one structured log line; turns an
    unexpected exception into a generic JSON 500 (traceback logged here, never sent to the client)."""

    def __init__(self, app: Any, *, access_log_enabled: bool = True) -> None:
        self.app = app
        self.access_log_enabled = access_log_enabled

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from .metrics import ServingMetrics

        t0 = time.perf_counter()
        outer_route = scope.get("route")
        state = scope.setdefault("state", {})
        status = 0
        started = False

        async def _send(message: dict[str, Any]) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = int(message["status"]), True
            await send(message)

        try:
            await self.app(scope, receive, _send)
        except Exception:
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            state["error"] = "internal error"
            if not started:
                await internal_error_response()(scope, receive, send)
            status = 500
        finally:
            seconds = time.perf_counter() - t0
            status = status or 499  # client went away before an answer
            path = scope.get("path", "").rstrip("/") or "/"
            ServingMetrics.get().observe_request(route_label(scope, outer_route), status, seconds)
            if self.access_log_enabled:
                line = {"method": scope.get("method"), "path": path, "status": status, "ms": round(1e3 * seconds, 2)}
                line.update({k: v for k, v in state.items() if k in ("model", "images", "label", "error")})
                access_log.info(json.dumps(line, separators=(",", ":")))


def route_label(scope: dict[str, Any], outer_route: Any = None) -> str:
    """The metrics label of a request: the path template of the route of this app that matched it
    (``/predict``, ``/v2/models/{name}/infer``), so the label set stays bounded and a new route needs no edit
    here. ``outer_route``: the route the enclosing app (BentoML's mount) matched, which is not ours."""
    route = scope.get("route")
    if route is None or route is outer_route:
        return "other"
    return getattr(route, "path_format", None) or getattr(route, "path", None) or "other"


OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/reload"})  # /reload has its own admin token


def needs_token(path: str) -> bool:
    """Everything our app serves needs ``IMGSERVE_API_TOKEN`` (when set) except probes and ``/reload``.
    BentoML's ``/livez``, ``/readyz`` and ``/metrics`` never reach this app."""
    path = path.rstrip("/") or "/"
    return path not in OPEN_PATHS and not (path.startswith("/v2/models/") and path.endswith("/ready"))


class TokenGuard:
    """Pure ASGI middleware: 401 in the one JSON shape (+ ``WWW-Authenticate: Bearer``) for a request without
    ``Authorization: Bearer <IMGSERVE_API_TOKEN>``, before any body is read."""

    def __init__(self, app: Any, *, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and needs_token(scope.get("path", "")):
            request = Request(scope)
            try:
                check_token(request, self.token, env="IMGSERVE_API_TOKEN")
            except Unauthorized as exc:
                scope.setdefault("state", {})["error"] = exc.message
                await error_response(exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(settings: ServeSettings) -> FastAPI:
    """The FastAPI app that service.py mounts: error handlers and the request observer, no routes (service.py
    adds its routes and the OIP REST router)."""
    app = FastAPI(title="imgserve", version="1", docs_url="/docs", redoc_url=None, openapi_url="/openapi.json")
    install_error_handlers(app)
    app.state.lean_table = table = LeanTable(app.router)  # also read by service.py's HotRoutes
    app.add_middleware(LeanRoutes, table=table)  # innermost: the hot routes skip FastAPI's own layers
    if settings.api_token:
        app.add_middleware(TokenGuard, token=settings.api_token)
    app.add_middleware(RequestObserver, access_log_enabled=settings.access_log)  # outermost: sees the 401s too
    return app


# ---- reading requests ------------------------------------------------------------------------------
def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _read_form_files(request: Request, *, max_files: int, limit: int) -> tuple[list[tuple[str, Any]], str | None]:
    """Parse a multipart body; returns its (field, value) pairs and the ``top_k`` form field, if any. A value is
    text, or a file as bytes (small bodies: :mod:`serving.multipart`'s fast path) or as an ``UploadFile``."""
    check_length(request, limit)
    declared = request.headers.get("content-length", "")
    try:
        if declared.isdigit() and int(declared) <= FAST_FORM_BYTES:
            body = await read_body(request, limit)
            items: list[tuple[str, Any]] = await read_form(body, request.headers, max_files=max_files, max_fields=16)
        else:  # big or chunked: Starlette streams it, spooling big files to disk
            items = list((await request.form(max_files=max_files, max_fields=16)).multi_items())
    except (MultiPartException, HTTPException) as exc:
        detail = getattr(exc, "message", None) or getattr(exc, "detail", "")
        if "Too many files" in str(detail):
            raise InvalidInput(f"too many files in one request; the limit is {max_files}") from None
        raise InvalidInput(f"malformed multipart body: {detail}") from None
    except ClientDisconnect:
        raise ClientDisconnected("the client closed the connection before sending the whole body") from None
    top_k = next((v for k, v in reversed(items) if k == "top_k"), None)  # the last one, as Starlette's form.get
    return items, (top_k if isinstance(top_k, str) else None)


async def _file_bytes(field: str, value: Any, max_bytes: int) -> bytes:
    if isinstance(value, bytes):
        size = len(value)
    elif isinstance(value, UploadFile):
        size = value.size
    else:
        raise InvalidInput(f"multipart field {field!r} must be a file upload (curl: -F {field}=@photo.jpg)")
    if size is not None and size > max_bytes:
        raise PayloadTooLarge(f"the image is {size} bytes; the limit is {max_bytes} bytes")
    return value if isinstance(value, bytes) else await value.read()


def _names(items: list[tuple[str, Any]]) -> str:
    names = sorted({k for k, v in items if k != "top_k"})
    return ", ".join(repr(n) for n in names) if names else "none"


async def read_image(request: Request, settings: ServeSettings) -> tuple[bytes, str | None]:
    """One image from ``/predict``: multipart field ``image`` (or ``file``) or a raw ``image/*`` body."""
    ctype = media_type(request)
    if ctype == "multipart/form-data":
        items, top_k = await _read_form_files(request, max_files=4, limit=settings.max_image_bytes + MULTIPART_SLACK)
        found = [(k, v) for k, v in items if k in IMAGE_FIELDS]
        if not found:
            raise InvalidInput(
                f"expected the image in a multipart file field named 'image' (or 'file'); got fields: {_names(items)}"
            )
        if len(found) > 1:
            raise InvalidInput("send one image to /predict (several go to /predict_batch as 'images' fields)")
        return await _file_bytes(*found[0], settings.max_image_bytes), top_k
    if ctype.startswith("image/") or ctype in RAW_TYPES or not ctype:
        body = await read_body(request, settings.max_image_bytes)
        if not body:
            raise InvalidInput(
                "the request body is empty: send the image as the body (Content-Type image/*) "
                "or as a multipart file field 'image'"
            )
        return body, None
    raise UnsupportedMediaType(
        f"unsupported Content-Type {ctype!r}: send multipart/form-data with a file field 'image', "
        "or the raw image with Content-Type image/* or application/octet-stream"
    )


async def read_images(request: Request, settings: ServeSettings) -> tuple[list[bytes], str | None]:
    """Several images from ``/predict_batch``: repeated multipart file fields ``images``."""
    ctype = media_type(request)
    if ctype != "multipart/form-data":
        raise UnsupportedMediaType(
            f"unsupported Content-Type {ctype or 'none'!r}: send multipart/form-data with one file field "
            f"'{BATCH_FIELD}' per image"
        )
    n = settings.max_batch_images
    items, top_k = await _read_form_files(
        request, max_files=n, limit=n * settings.max_image_bytes + MULTIPART_SLACK
    )
    found = [(k, v) for k, v in items if k == BATCH_FIELD]
    if not found:
        raise InvalidInput(
            f"expected the images in repeated multipart file fields named '{BATCH_FIELD}'; got fields: {_names(items)}"
        )
    return [await _file_bytes(k, v, settings.max_image_bytes) for k, v in found], top_k


def parse_top_k(raw: str | None, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        k = int(raw.strip())
    except ValueError:
        k = 0
    if not 1 <= k <= MAX_TOP_K:
        raise InvalidInput(f"top_k must be an integer from 1 to {MAX_TOP_K}, got {raw[:20]!r}")
    return k


# ---- the routes' bodies --------------------------------------------------------------------------------
def model_ref(result: Classification) -> dict[str, Any]:
    return {"name": result.card.name, "version": result.card.version, "variant": result.model.variant}


def predictions(result: Classification, k: int) -> list[dict[str, Any]]:
    return [{"label": top[0]["label"], "score": top[0]["score"], "top_k": top} for top in result.top_k(k)]


class HttpFrontend:
    """What each route does, given the process's runtime. Prediction routes take a slot of the runtime's one
    admission control (shared with OIP REST and gRPC) before the body is read."""

    def __init__(self, runtime: ModelRuntime, settings: ServeSettings):
        self.runtime = runtime
        self.settings = settings

    async def predict(self, request: Request) -> JSONResponse:
        name = request.query_params.get("model")  # None: the default (first) model
        with self.runtime.admit(name, http_client(request)):
            image, form_top_k = await read_image(request, self.settings)
            k = parse_top_k(request.query_params.get("top_k", form_top_k), self.settings.default_top_k)
            result = await self.runtime.classify_images([image], name=name)
        (one,) = predictions(result, k)
        request.state.model, request.state.images, request.state.label = result.model.label, 1, one["label"]
        return JSONResponse({**one, "model": model_ref(result)})

    async def predict_batch(self, request: Request) -> JSONResponse:
        name = request.query_params.get("model")
        with self.runtime.admit(name, http_client(request)):
            images, form_top_k = await read_images(request, self.settings)
            k = parse_top_k(request.query_params.get("top_k", form_top_k), self.settings.default_top_k)
            result = await self.runtime.classify_images(images, name=name)
        request.state.model, request.state.images = result.model.label, len(images)
        return JSONResponse({"predictions": predictions(result, k), "model": model_ref(result)})

    def model(self, request: Request) -> JSONResponse:
        info = self.runtime.describe(request.query_params.get("model"))
        request.state.model = f"{info['name']}:{info['version']}:{info['variant']}"
        return JSONResponse(info)

    def models(self, request: Request) -> JSONResponse:
        return JSONResponse({"models": self.runtime.list_models()})

    async def reload(self, request: Request) -> JSONResponse:
        check_admin(request, self.settings.admin_token)
        result = await self.runtime.reload(name=request.query_params.get("model"))
        request.state.model = f"{result['model']}:{result['version']}:{result['variant']}"
        return JSONResponse(result)
