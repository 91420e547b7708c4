"""The HTTP/1.1 connection edge: uvicorn's HTTP protocol with the limits a hostile or broken client needs.

On uvicorn's httptools protocol (C parser; serving/connection_httptools.py) when httptools is installed (the
serve extra installs it), else on its h11 protocol (pure Python; :class:`EdgeH11Protocol` below); the limits,
timers and answers live once, in :class:`EdgeProtocol`. ``IMGSERVE_HTTP_PARSER`` picks one explicitly.

Used by the service's BentoML workers (serving/uvicorn_config.py puts it in every ``uvicorn.Config``) and by
the admin runner. What it adds to uvicorn, and why (each found by probing a running server):

* **Lingering close.** A body refused before it was read (413 from ``Content-Length``) used to be followed
  by a close with unread data in the socket: the kernel then sends RST, and clients that write the whole
  body before reading (``urllib``, ``requests``, many SDKs) got ``ConnectionResetError`` instead of the 413.
  Now, when the server closes while the client is still sending, it half-closes (FIN after the response) and
  reads and discards what keeps coming, as nginx's ``lingering_close`` does, until the client closes, goes
  quiet for ``linger_idle_s`` or ``linger_s`` have passed.
* **Header limits.** The request line plus headers may hold ``max_header_bytes`` (431 beyond; h11 alone
  only bounds a header block that arrives incomplete, so one sent in a single read could be far larger).
* **Timeouts.** A request's headers must be complete ``header_timeout_s`` after its first byte (and a new
  connection must start one within that time); a body must not stall for ``body_timeout_s``. Either answers
  408 and closes: half-sent requests no longer hold sockets and memory for minutes.
* **Connections per worker.** Beyond ``max_connections`` a new connection is answered 503 + Retry-After and
  closed, before the worker spends anything on it.
* **One write per response.** uvicorn writes a response's head and body separately (two system calls, two TCP
  segments); the head is held until the body's first write (docs/serving.md, round 4).

Every answer here is the one JSON error shape (serving/edge.py).
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from inference.errors import HeadersTooLarge, ImgServeError, InvalidInput, Overloaded, RequestTimeout

from .connection_transport import EdgeTransport
from .edge import error_headers


@dataclass(frozen=True)
class ConnectionLimits:
    """Per-connection limits of one HTTP server process (see the module docstring for each one's reason)."""

    max_header_bytes: int = 32 * 1024
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    max_connections: int = 1000
    linger_s: float = 30.0
    linger_idle_s: float = 5.0
    parser: str = "auto"  # auto (httptools when installed, else h11), httptools or h11


_REASONS = {408: "Request Timeout", 413: "Payload Too Large", 431: "Request Header Fields Too Large",
            400: "Bad Request", 503: "Service Unavailable"}


def error_bytes(exc: ImgServeError) -> bytes:
    """A complete HTTP/1.1 error response (the one JSON shape) that closes the connection, for the cases
    answered below the ASGI app, where no framework renders responses."""
    import json

    body = json.dumps(exc.to_dict(), separators=(",", ":")).encode()
    headers = {"content-type": "application/json", "content-length": str(len(body)), "connection": "close"}
    headers.update({k.lower(): v for k, v in error_headers(exc).items()})
    head = f"HTTP/1.1 {exc.http_status} {_REASONS.get(exc.http_status, 'Error')}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode("latin-1") + b"\r\n" + body


def head_too_large(limit: int) -> HeadersTooLarge:
    """The 431 of either parser."""
    return HeadersTooLarge(f"the request line and headers are over the limit of {limit} bytes")


class _Connection(h11.Connection):
    """h11 with a bound on the whole request head, complete or not, remembering why it refused a request."""

    def __init__(self, max_header_bytes: int):
        super().__init__(h11.SERVER, max_incomplete_event_size=max_header_bytes)
        self.max_header_bytes = max_header_bytes
        self.refusal: ImgServeError | None = None

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            self.refusal = self._refusal(exc)
            raise
        if type(event) is h11.Request:
            size = len(event.method) + len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers)
            if size > self.max_header_bytes:
                exc = h11.RemoteProtocolError("request head too large", error_status_hint=431)
                self.refusal = self._refusal(exc)
                raise exc
        return event

    def _refusal(self, exc: h11.RemoteProtocolError) -> ImgServeError:
        if exc.error_status_hint == 431:
            return head_too_large(self.max_header_bytes)
        return InvalidInput(f"malformed HTTP request: {str(exc)[:200]}")


class ClientState(enum.Enum):
    """Where the client is in its current request, as the HTTP parser saw it."""

    IDLE = "idle"  # between requests, nothing of the next one received
    HEAD = "head"  # part of a request line/headers received
    BODY = "body"  # headers complete, body still coming
    DONE = "done"  # request complete (response pending or sent)
    ERROR = "error"  # the parser refused the request


class EdgeProtocol:
    """The limits of :class:`ConnectionLimits` on top of a uvicorn HTTP/1.1 protocol class (a mixin: put it
    first, as in ``class EdgeH11Protocol(EdgeProtocol, H11Protocol)``). The parser-specific subclass says where
    the client is (:meth:`client_state`) and feeds data; everything else (timers, refusals, the lingering
    close, connections per worker) is here, once for both parsers."""

    limits: ConnectionLimits = ConnectionLimits()
    # provided by uvicorn's protocol classes
    loop: asyncio.AbstractEventLoop
    cycle: Any
    flow: Any
    connections: set[Any]

    def client_state(self) -> ClientState:
        raise NotImplementedError

    def _edge_init(self) -> None:
        self.lingering = False
        self._raw: asyncio.Transport | None = None
        self._wrapped: EdgeTransport | None = None
        self._lost = False
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._linger_until = 0.0

    # ---- connection lifecycle ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:
        self._raw = transport
        self._wrapped = EdgeTransport(transport, self)
        super().connection_made(self._wrapped)  # type: ignore[misc]
        if len(self.connections) > self.limits.max_connections:
            self._refuse(Overloaded(f"this worker holds {self.limits.max_connections} connections", retry_after=1))
            return
        self._header_timer = self.loop.call_later(self.limits.header_timeout_s, self._header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        for timer in (self._header_timer, self._body_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        if self.lingering:  # discard: the answer is out; the client is still sending its body
            if self.loop.time() >= self._linger_until:
                self._raw_close()
            else:
                self._rearm_linger()
            return
        if self.client_state() is ClientState.IDLE and self._header_timer is None:  # a new request's first byte
            self._header_timer = self.loop.call_later(self.limits.header_timeout_s, self._header_timeout)
        super().data_received(data)  # type: ignore[misc]
        if self.lingering or self._lost:
            return
        state = self.client_state()
        if state not in (ClientState.IDLE, ClientState.HEAD) and self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        if state is ClientState.BODY:
            self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_timeout)

    def shutdown(self) -> None:
        """The server is stopping: a lingering connection is closed now; others as uvicorn does."""
        if self.lingering:
            self._raw_close()
            return
        super().shutdown()  # type: ignore[misc]

    # ---- refusals below the app --------------------------------------------------------------------
    def _refuse(self, exc: ImgServeError) -> None:
        if self.cycle is not None:
            self.cycle.disconnected = True  # the app, if running, sees a disconnect; its answer goes nowhere
            self.cycle.message_event.set()
        assert self._raw is not None and self._wrapped is not None
        self._wrapped.discard()  # a started answer of the app's would only garble ours
        self._raw.write(error_bytes(exc))
        self.close_transport(force_linger=True)

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.lingering or self._lost:
            return
        state = self.client_state()
        if state is ClientState.HEAD:  # part of a request head arrived, not all of it
            self._refuse(RequestTimeout(f"the request headers were not complete within {self.limits.header_timeout_s:g} s"))
        elif state is ClientState.IDLE:  # a connection that never started a request: close it quietly
            self._raw_close()

    def _body_timeout(self) -> None:
        self._body_timer = None
        if self.lingering or self._lost or self.client_state() is not ClientState.BODY:
            return
        waiting = self.cycle is not None and self.cycle.waiting_for_100_continue
        if self.flow.read_paused or waiting:  # we are not reading (back-pressure / 100-continue): not a stall
            self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_timeout)
            return
        if self.cycle is not None and self.cycle.response_started:
            self._raw_close()
            return
        limit = f"{self.limits.body_timeout_s:g}"
        self._refuse(RequestTimeout(f"the request body stalled: no data for {limit} s before it was complete"))

    # ---- closing -----------------------------------------------------------------------------------
    def close_transport(self, *, force_linger: bool = False) -> None:
        """Close now, unless the client may still be sending (a request body we did not read, a request we
        refused): then half-close and keep reading until it stops, so it reads our answer instead of a reset."""
        if self.lingering:
            return
        if self._wrapped is not None:
            self._wrapped.flush()
        pending = self.client_state() in (ClientState.HEAD, ClientState.BODY, ClientState.ERROR)
        if self._lost or not (pending or force_linger):
            self._raw_close()
            return
        self.lingering = True
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None
        assert self._raw is not None
        if self._raw.can_write_eof():  # TLS transports cannot half-close; the response's length frames it
            self._raw.write_eof()
        self._raw.resume_reading()
        self._linger_until = self.loop.time() + self.limits.linger_s
        self._rearm_linger()

    def _rearm_linger(self) -> None:
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        delay = min(self.limits.linger_idle_s, max(0.0, self._linger_until - self.loop.time()))
        self._linger_timer = self.loop.call_later(delay, self._raw_close)

    def _raw_close(self) -> None:
        if self._wrapped is not None:
            self._wrapped.flush()
        if self._raw is not None and not self._raw.is_closing():
            self._raw.close()


_H11_STATES = {h11.SEND_BODY: ClientState.BODY, h11.ERROR: ClientState.ERROR}


class EdgeH11Protocol(EdgeProtocol, H11Protocol):
    """uvicorn's h11 protocol (pure Python) with the connection edge."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _Connection(self.limits.max_header_bytes)
        self._edge_init()

    def client_state(self) -> ClientState:
        state = self.conn.their_state
        if state is h11.IDLE:
            return ClientState.HEAD if self.conn.trailing_data[0] else ClientState.IDLE
        return _H11_STATES.get(state, ClientState.DONE)

    def shutdown(self) -> None:
        try:
            super().shutdown()
        except h11.LocalProtocolError:  # a request we refused below the app left h11 mid-exchange
            self._raw_close()

    def send_400_response(self, msg: str) -> None:
        """h11 refused the request head (too large, malformed): the one JSON shape, not uvicorn's text/plain."""
        self._refuse(self.conn.refusal or InvalidInput("malformed HTTP request"))


def protocol_class(limits: ConnectionLimits) -> type[EdgeProtocol]:
    """The connection edge bound to ``limits``, to pass as ``uvicorn.Config(http=...)``: on httptools (C,
    llhttp) when ``limits.parser`` is httptools, or auto and httptools is installed; else on h11 (pure Python)."""
    base: type[EdgeProtocol] = EdgeH11Protocol
    parser = limits.parser
    if parser == "httptools" or (parser == "auto" and _have_httptools()):
        from .connection_httptools import EdgeHttpToolsProtocol

        base = EdgeHttpToolsProtocol
    elif parser not in ("auto", "h11"):
        raise ValueError(f"unknown HTTP parser {parser!r}: auto, h11 or httptools")
    return type(base.__name__, (base,), {"limits": limits})


def _have_httptools() -> bool:
    import importlib.util

    return importlib.util.find_spec("httptools") is not None
