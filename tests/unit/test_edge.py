"""The one request edge (serving/edge.py) every HTTP front end uses: error shape, Retry-After rounding, body
limits, token and loopback checks. The same functions serve /predict, OIP REST and the admin runner."""

from __future__ import annotations

import asyncio
import json

import pytest
from starlette.requests import Request

from inference.errors import (
    ClientDisconnected,
    Forbidden,
    InvalidInput,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    Unauthorized,
)
from serving.edge import (
    bearer_matches,
    check_admin,
    check_token,
    error_response,
    is_loopback,
    read_body,
    retry_after_value,
)


def _request(client: str = "127.0.0.1", auth: str | None = None, length: int | None = None, receive=None) -> Request:  # type: ignore[no-untyped-def]
    headers = [(b"authorization", auth.encode())] if auth else []
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    scope = {"type": "http", "method": "POST", "path": "/x", "headers": headers, "client": (client, 5000)}
    return Request(scope, receive) if receive else Request(scope)


def _receiver(*messages: dict):  # type: ignore[no-untyped-def]
    it = iter(messages)

    async def receive() -> dict:
        return next(it)

    return receive


def test_error_response_bodies_and_headers() -> None:
    resp = error_response(Overloaded("the inference queue is full", retry_after=1.2))
    assert resp.status_code == 503 and resp.headers["retry-after"] == "2"
    assert json.loads(resp.body) == {"error": "the inference queue is full", "type": "overloaded"}
    assert error_response(NotReady("loading", retry_after=0.1)).headers["retry-after"] == "1"
    assert error_response(PayloadTooLarge("too big")).status_code == 413
    bad = error_response(InvalidInput("nope"))
    assert bad.status_code == 400 and "retry-after" not in bad.headers
    assert error_response(Unauthorized("token")).headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("seconds", "header"), [(0.0, "1"), (0.2, "1"), (1.0, "1"), (1.01, "2"), (7.5, "8")])
def test_retry_after_is_whole_seconds_rounded_up_at_least_one(seconds: float, header: str) -> None:
    assert retry_after_value(seconds) == header


def test_read_body_refuses_a_declared_length_over_the_limit_before_reading() -> None:
    def never() -> None:
        raise AssertionError("the body must not be read")

    with pytest.raises(PayloadTooLarge, match="31457280 bytes; the limit is 1000 bytes"):
        asyncio.run(read_body(_request(length=30 << 20, receive=never), 1000))


def test_read_body_refuses_a_stream_that_passes_the_limit_and_reports_a_disconnect_as_499() -> None:
    chunks = [{"type": "http.request", "body": b"x" * 600, "more_body": True}] * 2
    with pytest.raises(PayloadTooLarge, match="over the limit of 1000 bytes"):
        asyncio.run(read_body(_request(receive=_receiver(*chunks)), 1000))
    gone = _receiver({"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"})
    with pytest.raises(ClientDisconnected) as info:
        asyncio.run(read_body(_request(receive=gone), 1000))
    assert info.value.http_status == 499
    whole = _receiver({"type": "http.request", "body": b"abc", "more_body": True}, {"type": "http.request", "body": b"d"})
    assert asyncio.run(read_body(_request(receive=whole), 4)) == b"abcd"


def test_bearer_matches_only_the_exact_token() -> None:
    assert bearer_matches("Bearer s3cret", "s3cret") and bearer_matches("bearer  s3cret ", "s3cret")
    for value in (None, "", "Bearer nope", "Basic s3cret", "s3cret", "Bearer s3cret2"):
        assert not bearer_matches(value, "s3cret")


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.9.9.9")
    for host in (None, "", "10.1.2.3", "0.0.0.0", "testclient", "example.com"):
        assert not is_loopback(host)


def test_check_admin_without_token_is_loopback_only() -> None:
    check_admin(_request("127.0.0.1"), None)
    check_admin(_request("::1"), None)
    with pytest.raises(Forbidden, match="only callers on this machine"):
        check_admin(_request("10.1.2.3"), None)


def test_check_admin_with_token() -> None:
    check_admin(_request("10.1.2.3", "Bearer s3cret"), "s3cret")
    for auth in (None, "Bearer nope", "Basic s3cret", "s3cret"):
        with pytest.raises(Unauthorized, match="IMGSERVE_ADMIN_TOKEN"):
            check_admin(_request("127.0.0.1", auth), "s3cret")


def test_check_token_is_a_no_op_without_a_token() -> None:
    check_token(_request("10.1.2.3"), None, env="IMGSERVE_API_TOKEN")
    with pytest.raises(Unauthorized, match="IMGSERVE_API_TOKEN"):
        check_token(_request("127.0.0.1"), "t", env="IMGSERVE_API_TOKEN")
