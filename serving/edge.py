"""The one request edge of every HTTP front end: the service's routes (serving/http.py), OIP REST
(serving/oip_rest.py) and the admin runner (admin/app.py) read bodies, render errors and check tokens here.

Why one module: these were written per front end (four body readers, three error renderers with two
``Retry-After`` roundings, three token checks), and they drifted. The rules, once:

* A body over its limit is refused from ``Content-Length`` before any of it is read, or as soon as the
  stream passes the limit; the connection layer (serving/connection.py) then drains what the client still
  sends, so a client that writes its whole body before reading sees the 413 instead of a reset.
* Every error is ``{"error": "<message>", "type": "<kind>"}`` with the error's HTTP status; ``Retry-After``
  is whole seconds, rounded up, at least 1; 401 adds ``WWW-Authenticate: Bearer``.
* A bearer token is compared in constant time; without a configured token, admin actions answer loopback
  callers only (403 otherwise: no credential would help).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse

from inference.errors import (
    ClientDisconnected,
    Forbidden,
    ImgServeError,
    InvalidInput,
    PayloadTooLarge,
    Unauthorized,
)

INTERNAL_ERROR = {"error": "internal server error; the server log has the details", "type": "internal_error"}


# ---- errors: the one JSON shape --------------------------------------------------------------------
def retry_after_value(seconds: float) -> str:
    """``Retry-After`` (and gRPC's ``retry-after`` trailer): whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))


def error_headers(exc: ImgServeError) -> dict[str, str]:
    headers: dict[str, str] = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = retry_after_value(exc.retry_after)
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    return headers


def error_response(exc: ImgServeError) -> JSONResponse:
    """The response for any :class:`ImgServeError`, on every front end."""
    return JSONResponse(exc.to_dict(), status_code=exc.http_status, headers=error_headers(exc))


def internal_error_response() -> JSONResponse:
    """An unexpected exception: a generic 500; the traceback belongs in the server log, never to the client."""
    return JSONResponse(INTERNAL_ERROR, status_code=500)


def imgserve_error_response(request: Request, exc: ImgServeError) -> JSONResponse:
    """An :class:`ImgServeError` raised by a route: its response, and its message for the access log."""
    request.state.error = exc.message
    return error_response(exc)


def http_error_response(exc: HTTPException) -> JSONResponse:
    """Starlette's ``HTTPException`` (404, 405, …) in the one JSON shape."""
    body = {"error": str(exc.detail), "type": "http_error"}
    return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _imgserve_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ImgServeError)
    return imgserve_error_response(request, exc)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return http_error_response(exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in exc.errors())
    return error_response(InvalidInput(f"invalid request: {problems}"))


def install_error_handlers(app: FastAPI) -> None:
    """Our errors, Starlette's HTTP errors (404, 405) and FastAPI's validation errors in the one JSON shape."""
    app.add_exception_handler(ImgServeError, _imgserve_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)


# ---- bodies ----------------------------------------------------------------------------------------
def check_length(request: Request, limit: int, what: str = "the request body") -> None:
    """Refuse a body whose declared ``Content-Length`` is over ``limit`` before reading any of it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"{what} is {declared} bytes; the limit is {limit} bytes")


async def read_body(request: Request, limit: int, what: str = "the request body") -> bytes:
    """The whole body, at most ``limit`` bytes (413 beyond; 499 if the client leaves mid-body)."""
    check_length(request, limit, what)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"{what} is over the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # the client's doing: 499 in log and metrics, not a 400 we answered
        raise ClientDisconnected("the client closed the connection before sending the whole body") from None
    return b"".join(chunks)


def json_object(data: bytes, what: str) -> dict[str, Any]:
    """``data`` parsed as a JSON object, or InvalidInput naming ``what``. Nesting too deep for Python's
    parser (``[[[[…`` 100,000 levels: RecursionError, once a 500) is bad input like any other."""
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise InvalidInput(f"{what} is not valid JSON: {reason}") from None
    if not isinstance(parsed, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return parsed


async def read_upload(upload: Any, limit: int, what: str = "the upload") -> bytes:
    """A multipart file part (Starlette ``UploadFile``), at most ``limit`` bytes."""
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"{what} is over the limit of {limit} bytes")
    return data


# ---- tokens ----------------------------------------------------------------------------------------
def bearer_matches(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` value (HTTP header or gRPC metadata) is ``Bearer <token>``."""
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def check_token(request: Request, token: str | None, *, env: str) -> None:
    """A bearer token when one is configured (``env`` names the variable that holds it)."""
    if token and not bearer_matches(request.headers.get("authorization"), token):
        raise Unauthorized(f"missing or wrong token: send the header 'Authorization: Bearer <{env}>'")


def check_admin(request: Request, token: str | None, *, env: str = "IMGSERVE_ADMIN_TOKEN") -> None:
    """Admin actions: the bearer token when one is configured, else callers on this machine only."""
    if token:
        check_token(request, token, env=env)
        return
    if not is_loopback(request.client.host if request.client else None):
        raise Forbidden(f"without {env} only callers on this machine are served; set the token to allow others")
