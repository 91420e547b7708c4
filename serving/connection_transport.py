"""The socket transport as the connection edge's uvicorn protocol sees it (serving/connection.py)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .connection import EdgeProtocol


class EdgeTransport:
    """The socket transport as uvicorn sees it: ``close()`` becomes a lingering close when the client is
    still sending (see ``EdgeProtocol.close_transport`` in serving/connection.py), and a response's status line and headers are
    held until its body is written, so that both leave in one ``send``: uvicorn writes them separately, which
    cost a second system call and a second TCP segment per response (~4 % of a worker's CPU on small images).
    Any other write, ``close`` or :meth:`flush` sends what is held first; everything else is the real
    transport's."""

    def __init__(self, transport: asyncio.Transport, protocol: EdgeProtocol):
        self._transport = transport
        self._protocol = protocol
        self._held = b""

    def write(self, data: bytes) -> None:
        if self._held:
            data, self._held = self._held + data, b""
        elif _is_response_head(data):
            self._held = data
            return
        self._transport.write(data)

    def discard(self) -> None:
        self._held = b""

    def flush(self) -> None:
        if self._held:
            data, self._held = self._held, b""
            self._transport.write(data)

    def close(self) -> None:
        self._protocol.close_transport()

    def is_closing(self) -> bool:
        return self._protocol.lingering or self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _is_response_head(data: bytes) -> bool:
    """A final response's status line and headers, as uvicorn writes them (not a ``100 Continue``, which the
    client waits for before it sends its body)."""
    return data[:9] == b"HTTP/1.1 " and data[9:10] != b"1" and data[-4:] == b"\r\n\r\n"
