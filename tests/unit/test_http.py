"""The HTTP front end's pieces without a server: error mapping, top_k, admin check, the request observer."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest
from fastapi import Request
from starlette.requests import Request as StarletteRequest

from inference.errors import (
    ClientDisconnected,
    Forbidden,
    InvalidInput,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    Unauthorized,
)
from serving.http import check_admin, create_app, error_response, parse_top_k
from serving.settings import ServeSettings


def test_error_response_bodies_and_headers() -> None:
    resp = error_response(Overloaded("the inference queue is full", retry_after=1.2))
    assert resp.status_code == 503 and resp.headers["retry-after"] == "2"
    assert json.loads(resp.body) == {"error": "the inference queue is full", "type": "overloaded"}
    assert error_response(NotReady("loading", retry_after=0.1)).headers["retry-after"] == "1"
    assert error_response(PayloadTooLarge("too big")).status_code == 413
    bad = error_response(InvalidInput("nope"))
    assert bad.status_code == 400 and "retry-after" not in bad.headers
    assert error_response(Unauthorized("token")).headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("raw", "k"), [(None, 5), ("", 5), ("1", 1), (" 7 ", 7), ("1000", 1000)])
def test_parse_top_k(raw: str | None, k: int) -> None:
    assert parse_top_k(raw, 5) == k


@pytest.mark.parametrize("raw", ["0", "-1", "x", "2.5", "1001"])
def test_parse_top_k_rejects(raw: str) -> None:
    with pytest.raises(InvalidInput, match="top_k must be an integer"):
        parse_top_k(raw, 5)


def _request(client: str, auth: str | None = None) -> StarletteRequest:
    headers = [(b"authorization", auth.encode())] if auth else []
    return StarletteRequest({"type": "http", "method": "POST", "path": "/reload", "headers": headers, "client": (client, 5000)})


def test_check_admin_without_token_is_loopback_only() -> None:
    check_admin(_request("127.0.0.1"), None)
    check_admin(_request("::1"), None)
    with pytest.raises(Forbidden, match="only local callers"):
        check_admin(_request("10.1.2.3"), None)


def test_check_admin_with_token() -> None:
    check_admin(_request("10.1.2.3", "Bearer s3cret"), "s3cret")
    for auth in (None, "Bearer nope", "Basic s3cret", "s3cret"):
        with pytest.raises(Unauthorized):
            check_admin(_request("127.0.0.1", auth), "s3cret")


def test_unexpected_errors_become_a_generic_500(caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(ServeSettings(access_log=True))

    @app.get("/model")
    async def boom(request: Request) -> None:
        raise RuntimeError("secret /etc/passwd detail")

    @app.post("/predict")
    async def invalid(request: Request) -> None:
        raise InvalidInput("the image is empty (0 bytes)")

    async def main() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/model"), await client.post("/predict")

    with caplog.at_level(logging.INFO):
        crashed, rejected = asyncio.run(main())
    assert crashed.status_code == 500
    assert crashed.json() == {"error": "internal server error; the server log has the details", "type": "internal_error"}
    assert "passwd" not in crashed.text
    assert rejected.status_code == 400 and rejected.json()["type"] == "invalid_input"
    assert any("secret /etc/passwd detail" in (r.exc_text or "") for r in caplog.records)  # logged, with traceback
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "imgserve.access"]
    assert [(line["path"], line["status"]) for line in lines] == [("/model", 500), ("/predict", 400)]
    assert lines[1]["error"] == "the image is empty (0 bytes)"


def test_a_client_that_leaves_mid_body_is_logged_as_499_not_as_a_bad_request(caplog: pytest.LogCaptureFixture) -> None:
    """A disconnect while the body is read is the client's doing: 499 in the log and metrics (nginx's "client
    closed request"), never a 400 that would read as a request we refused."""
    from serving.http import read_body

    app = create_app(ServeSettings(access_log=True))

    @app.post("/predict")
    async def predict(request: Request) -> bytes:
        return await read_body(request, 1000)

    async def main() -> list[dict]:
        sent: list[dict] = []
        messages = iter([{"type": "http.request", "body": b"abc", "more_body": True}, {"type": "http.disconnect"}])

        async def receive() -> dict:
            return next(messages)

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/predict", "headers": [(b"content-type", b"image/png")],
                 "query_string": b"", "client": ("127.0.0.1", 5000), "server": ("t", 80), "scheme": "http"}
        await app(scope, receive, send)
        return sent

    with caplog.at_level(logging.INFO):
        sent = asyncio.run(main())
    assert sent[0]["status"] == 499
    (line,) = [json.loads(r.getMessage()) for r in caplog.records if r.name == "imgserve.access"]
    assert line["status"] == 499 and "closed the connection" in line["error"]
    assert issubclass(ClientDisconnected, InvalidInput)


def test_oip_rest_body_reader_reports_a_disconnect_as_the_clients_not_as_a_500() -> None:
    from serving.oip_rest import _read_body

    messages = iter([{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}])

    async def receive() -> dict:
        return next(messages)

    request = StarletteRequest({"type": "http", "method": "POST", "path": "/v2/models/m/infer", "headers": []}, receive)
    with pytest.raises(ClientDisconnected) as info:
        asyncio.run(_read_body(request, 1000))
    assert info.value.http_status == 499
