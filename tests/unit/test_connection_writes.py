"""The connection edge writes each response in one ``send`` (``EdgeTransport``, serving/connection_transport.py):
uvicorn's protocols write the status line and headers, then the body, as two writes. Driven through the real
uvicorn protocol classes (both parsers) with a transport that records what reaches the socket."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from serving.connection import ConnectionLimits, protocol_class


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 3000)}.get(name, default)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.writes.append(b"<eof>")

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def _exchange(parser: str, *chunks: bytes) -> RecordingTransport:
    config = uvicorn.Config(app=_app, http=protocol_class(ConnectionLimits(parser=parser)), log_level="error")
    config.load()
    protocol = config.http_protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    for chunk in chunks:
        protocol.data_received(chunk)
        await asyncio.sleep(0.01)
    for _ in range(50):
        if any(w.endswith(b"ok") for w in transport.writes):
            break
        await asyncio.sleep(0.01)
    protocol.connection_lost(None)
    transport.writes = [w for w in transport.writes if w]  # h11 ends a framed body with an empty write: a no-op
    return transport


@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_status_headers_and_body_leave_in_one_write(parser: str) -> None:
    t = asyncio.run(_exchange(parser, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert len(t.writes) == 2, t.writes  # one per response, keep-alive: two requests
    for w in t.writes:
        assert w.startswith(b"HTTP/1.1 200 OK\r\n") and w.endswith(b"\r\n\r\nok")


@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_100_continue_is_not_held(parser: str) -> None:
    """The client waits for ``100 Continue`` before sending its body: holding it back would stall the request."""
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
    t = asyncio.run(_exchange(parser, head, b"abc"))
    assert t.writes[0] == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert len(t.writes) == 2 and t.writes[1].endswith(b"\r\n\r\nok")


def test_a_held_head_goes_out_before_a_close() -> None:
    """An app that starts a response and then fails: uvicorn closes the connection, and what was held is sent
    first (the client sees the headers and the connection ending, as without the edge)."""
    from serving.connection_transport import EdgeTransport

    class Protocol:
        lingering = False

        def __init__(self, raw: RecordingTransport) -> None:
            self.raw = raw

        def close_transport(self) -> None:
            wrapped.flush()
            self.raw.close()

    raw = RecordingTransport()
    wrapped = EdgeTransport(raw, Protocol(raw))  # type: ignore[arg-type]
    wrapped.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert raw.writes == []
    wrapped.close()
    assert raw.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"] and raw.closed
    wrapped.write(b"HTTP/1.1 200 OK\r\n\r\n")
    wrapped.discard()  # the edge refuses the request below the app: the app's answer goes nowhere
    wrapped.flush()
    assert len(raw.writes) == 1
