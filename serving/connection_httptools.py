"""The connection edge (serving/connection.py) on uvicorn's httptools protocol: llhttp, in C, parses requests.

Why: under wrk at c=64 on 28x28 images, uvicorn's pure-Python h11 protocol (with the edge on top) was the
largest share of a worker's CPU (22 %, docs/serving.md). The limits are the same as on h11, and so are the
answers; what differs is how they are detected:

* **Header size.** llhttp has no bound of its own, and it buffers a header value until the value is complete,
  so the bytes of the request head are counted as they arrive (``data_received``) and again, exactly, from the
  parser's callbacks: over ``max_header_bytes`` the request is refused with 431 after at most one read more.
* **Where the client is** (:class:`ClientState`) comes from the parser's callbacks: message begin (head),
  headers complete (body), message complete (idle again).
* **A response sent before the request body was read** (a 413 from ``Content-Length``) is handled as on h11:
  a kept-alive connection reads on and discards the rest; a client that asked to close (``urllib``) gets the
  lingering close.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from inference.errors import ImgServeError, InvalidInput

from .connection import ClientState, EdgeProtocol, head_too_large


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing (httptools turns it into HttpParserCallbackError)."""


class EdgeHttpToolsProtocol(EdgeProtocol, HttpToolsProtocol):
    """uvicorn's httptools protocol with the connection edge."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._state = ClientState.IDLE
        self._head_bytes = 0  # request line + headers, exactly, from the callbacks
        self._head_raw = 0  # bytes read while a head was incomplete before and after the read
        self._refusal: ImgServeError | None = None
        self._edge_init()

    def client_state(self) -> ClientState:
        return self._state

    def data_received(self, data: bytes) -> None:
        """Also bounds a head that arrives in many reads: llhttp buffers an incomplete header value, which the
        callbacks see only once it is complete (the read in which a head starts is not counted here: it may
        carry the end of the request before; its share is bounded by one read)."""
        in_head = self._state is ClientState.HEAD
        super().data_received(data)
        if in_head and self._state is ClientState.HEAD and not self.lingering and not self._lost:
            self._head_raw += len(data)
            if self._head_raw > self.limits.max_header_bytes:
                self._refuse(head_too_large(self.limits.max_header_bytes))

    # ---- parser callbacks --------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._state, self._head_bytes, self._head_raw = ClientState.HEAD, 0, 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._state = ClientState.BODY
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # answered already (early, before the body was in): between requests; else until the response is out
        answered = self.cycle is not None and self.cycle.response_complete and not self.pipeline
        self._state = ClientState.IDLE if answered else ClientState.DONE

    def on_response_complete(self) -> None:
        # An answer sent before the body was read (an early 4xx/503) leaves the client in BODY: as on h11, a
        # kept-alive connection reads on and discards the rest; without keep-alive uvicorn has closed it,
        # lingering (EdgeProtocol.close_transport).
        if self._state is ClientState.DONE:
            self._state = ClientState.IDLE
        super().on_response_complete()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.limits.max_header_bytes:
            self._refusal = head_too_large(self.limits.max_header_bytes)
            raise _HeadTooLarge

    # ---- refusals ---------------------------------------------------------------------
    def send_400_response(self, msg: str) -> None:
        """llhttp refused the request (malformed) or a callback stopped it (head too large): the one JSON
        shape, not uvicorn's text/plain."""
        self._state = ClientState.ERROR
        self._refuse(self._refusal or InvalidInput("malformed HTTP request"))

