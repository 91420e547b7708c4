"""Open Inference Protocol over HTTP/REST (``/v2/...``), compatible with ``tritonclient.http``.

JSON tensors per the KServe v2 spec, plus Triton's binary-data extension (what tritonclient.http sends by
default): the body is a JSON header of ``Inference-Header-Content-Length`` bytes followed by each binary
input's raw bytes in input order, sized by its ``binary_data_size`` parameter. Outputs come back the same
way when the request asks for it (``binary_data_output`` or a per-output ``binary_data``). BYTES inputs sent
as JSON are UTF-8 strings, or base64 with the input parameter ``"content_type": "base64"``.

Errors, mapped once by :class:`OipRoute` through serving/edge.py (the shape every front end uses):
``{"error": "...", "type": "..."}`` with 400 / 404 / 413 / 503 (+ Retry-After); KServe clients read ``error``.

Mount it in any FastAPI app::

    app.include_router(build_router(lambda: runtime))
"""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

from inference.errors import ImgServeError, InvalidInput, NotReady, PayloadTooLarge, UnsupportedMediaType

from .edge import error_response, internal_error_response, json_object, read_body
from .lean import lean
from .oip_codec import RequestedOutput, Tensor, from_raw, from_values, to_json_values, to_raw
from .oip_dataplane import InferResult, OipDataPlane
from .ratelimit import http_client
from .runtime import ModelRuntime

log = logging.getLogger(__name__)

HEADER_LENGTH = "Inference-Header-Content-Length"
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
OFFLOAD_BYTES = 256 * 1024


class OipRoute(APIRoute):
    """The one place OIP REST errors are rendered (independent of the app's own handlers)."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except ImgServeError as exc:
                request.state.error = exc.message
                return error_response(exc)
            except Exception:
                log.exception("unexpected error in %s %s", request.method, request.url.path)
                return internal_error_response()

        return guarded


def build_router(
    get_runtime: Callable[[], ModelRuntime],
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> APIRouter:
    """The ``/v2`` routes over the runtime returned by ``get_runtime()`` (called per request); inference takes a
    slot of the runtime's admission control, shared with ``/predict`` and gRPC."""
    plane = OipDataPlane(get_runtime)
    router = APIRouter(prefix="/v2", tags=["Open Inference Protocol"], route_class=OipRoute)
    _add_server_routes(router, plane)
    _add_model_routes(router, plane)
    _add_infer_route(router, plane, max_body_bytes)
    return router


def _add_server_routes(router: APIRouter, plane: OipDataPlane) -> None:
    """Health, server metadata, every model's statistics and the repository index."""

    @router.get("/health/live")
    async def server_live() -> Response:
        return _json({"live": plane.live()})

    @router.get("/health/ready")
    async def server_ready() -> Response:
        if not plane.ready():
            raise NotReady("the model is not loaded yet", retry_after=1)
        return _json({"ready": True})

    @router.get("")
    async def server_metadata() -> Response:
        return _json(plane.server_metadata())

    @router.get("/models/stats")  # before /models/{name}: every served model's statistics
    async def all_statistics() -> Response:
        return _json(plane.model_statistics())

    @router.post("/repository/index")
    async def repository_index(request: Request) -> Response:
        body = await read_body(request, 64 * 1024)
        what = 'the repository index request (empty, or a JSON object like {"ready": true})'
        ready = bool(json_object(body, what).get("ready", False)) if body.strip() else False
        return Response(json.dumps(plane.repository_index(ready)), media_type="application/json")


def _add_model_routes(router: APIRouter, plane: OipDataPlane) -> None:
    """One model's configuration, statistics, metadata and readiness, with or without ``/versions/{version}``."""

    def model_get(suffix: str, answer: Callable[[str, str], dict[str, Any]]) -> None:
        """``GET /models/{name}[/versions/{version}]<suffix>`` answered by ``answer(name, version)``."""

        async def route(name: str, request: Request) -> Response:
            return _json(answer(name, _version_of(request)))

        for path in (f"/models/{{name}}{suffix}", f"/models/{{name}}/versions/{{version}}{suffix}"):
            router.add_api_route(path, route, methods=["GET"], name=answer.__name__)

    model_get("/config", plane.model_config)  # Triton's model configuration
    model_get("/stats", plane.model_statistics)  # Triton's statistics
    model_get("", plane.model_metadata)

    @router.get("/models/{name}/ready")
    @router.get("/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, request: Request) -> Response:
        plane.resolve(name, _version_of(request))  # NotFound -> 404, NotReady -> 503
        return _json({"name": name, "ready": True})


def _add_infer_route(router: APIRouter, plane: OipDataPlane, max_body_bytes: int) -> None:
    """``POST /models/{name}[/versions/{version}]/infer``, the one route on the hot path."""

    @router.post("/models/{name}/infer")
    @router.post("/models/{name}/versions/{version}/infer")
    @lean  # past FastAPI's per-request layers (serving/lean.py); errors rendered as OipRoute does
    async def infer(name: str, request: Request) -> Response:
        model = plane.resolve(name, _version_of(request))
        with plane.admit(name, http_client(request)):
            body = await read_body(request, max_body_bytes)
            args = (
                body,
                request.headers.get("content-encoding"),
                request.headers.get(HEADER_LENGTH),
                max_body_bytes,
            )
            # big bodies (JSON number lists above all) are parsed off the event loop the front ends share
            parsed = await asyncio.to_thread(_decode, *args) if len(body) > OFFLOAD_BYTES else _decode(*args)
            header, inputs, outputs, params = parsed
            timeout_us = params.get("timeout")
            timeout_s = timeout_us / 1e6 if isinstance(timeout_us, int | float) and timeout_us > 0 else None
            result = await plane.infer(
                model, inputs, outputs, request_id=str(header.get("id", "")), timeout_s=timeout_s
            )
        return _infer_response(result, outputs, bool(params.get("binary_data_output", False)))


def _version_of(request: Request) -> str:
    """The path's ``{version}``; empty on the routes without one."""
    return str(request.path_params.get("version", ""))


# ---- request -------------------------------------------------------------------------------------
def _decode(
    body: bytes, encoding: str | None, header_length: str | None, limit: int
) -> tuple[dict[str, Any], list[Tensor], list[RequestedOutput], dict[str, Any]]:
    """Body bytes -> (JSON header, input tensors, requested outputs, request parameters)."""
    body = _inflate(body, (encoding or "identity").lower(), limit)
    header, binary = _split_body(body, header_length)
    inputs, outputs, params = _parse_request(header, binary)
    return header, inputs, outputs, params


def _inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """Undo tritonclient's ``request_compression_algorithm`` (gzip or deflate), bounded by ``limit``."""
    if encoding == "identity":
        return body
    if encoding not in ("gzip", "deflate"):
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported (use gzip or deflate)")
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        body = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise InvalidInput(f"the request body is not valid {encoding} data") from None
    if len(body) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"the decompressed request body exceeds the limit of {limit} bytes")
    return body


def _split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], memoryview]:
    if header_length is None:
        json_part, binary = body, memoryview(b"")
    else:
        try:
            n = int(header_length)
        except ValueError:
            raise InvalidInput(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
        if not 0 < n <= len(body):
            raise InvalidInput(f"{HEADER_LENGTH} is {n} but the body holds {len(body)} bytes")
        json_part, binary = body[:n], memoryview(body)[n:]
    return json_object(json_part, "the inference request"), binary


def _parse_request(
    header: dict[str, Any], binary: memoryview
) -> tuple[list[Tensor], list[RequestedOutput], dict[str, Any]]:
    raw_inputs = header.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("the inference request needs a non-empty 'inputs' list")
    inputs, offset = [], 0
    for item in raw_inputs:
        if not isinstance(item, dict):
            raise InvalidInput("each entry of 'inputs' must be an object with name, shape, datatype and data")
        name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
        params = _params(item, f"input '{name}'")
        size = params.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise InvalidInput(
                    f"input '{name}': binary_data_size {size} does not fit the binary data sent"
                )
            inputs.append(from_raw(name, datatype, shape, binary[offset : offset + size]))
            offset += size
        elif "data" in item:
            b64 = params.get("content_type") == "base64"
            inputs.append(from_values(name, datatype, shape, item["data"], base64_bytes=b64))
        elif any(k.startswith("shared_memory") for k in params):
            raise InvalidInput(
                f"input '{name}': shared memory is not supported; send the data in the request"
            )
        else:
            raise InvalidInput(f"input '{name}' has neither 'data' nor a 'binary_data_size' parameter")
    if offset != len(binary):
        raise InvalidInput(f"{len(binary) - offset} bytes of binary data are not claimed by any input")
    outputs = []
    for item in header.get("outputs") or []:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput("each entry of 'outputs' must be an object with a 'name'")
        params = _params(item, f"output '{item['name']}'")
        k = params.get("classification", 0)
        if not isinstance(k, int):
            raise InvalidInput(f"output '{item['name']}': classification must be an integer")
        binary_flag = params.get("binary_data")
        outputs.append(
            RequestedOutput(
                item["name"], classification=k, binary=None if binary_flag is None else bool(binary_flag)
            )
        )
    return inputs, outputs, _params(header, "the request")


def _params(item: dict[str, Any], what: str) -> dict[str, Any]:
    params = item.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput(f"{what}: 'parameters' must be an object")
    return params


# ---- response ------------------------------------------------------------------------------------
def _infer_response(result: InferResult, requested: list[RequestedOutput], binary_default: bool) -> Response:
    flags = {o.name: o.binary for o in requested}
    outputs, blobs = [], []
    for tensor in result.outputs:
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        flag = flags.get(tensor.name)
        as_binary = binary_default if flag is None else flag
        if as_binary:
            blob = to_raw(tensor)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = to_json_values(tensor)
        outputs.append(entry)
    body: dict[str, Any] = {
        "model_name": result.model_name,
        "model_version": result.model_version,
        "outputs": outputs,
    }
    if result.id:
        body["id"] = result.id
    header = json.dumps(body).encode()
    if not blobs:
        return Response(header, media_type="application/json")
    return Response(
        b"".join([header, *blobs]),
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(header))},
    )


def _json(data: dict[str, Any]) -> Response:
    return Response(json.dumps(data), media_type="application/json")
