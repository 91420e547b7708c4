"""The BentoML worker's uvicorn server, configured by us: the connection edge (serving/connection.py: header
limits, timeouts, lingering close, connections per worker) and the HTTP/1.1 keep-alive ``IMGSERVE_KEEP_ALIVE_S``
(default 120 s).

BentoML 1.4 builds the worker's ``uvicorn.Config`` itself and offers no setting for either, so
:func:`configure_uvicorn`, called when the worker imports ``service.py`` (before it builds that config), makes
every ``uvicorn.Config`` built afterwards in this process use our HTTP protocol class and keep-alive.

Keep-alive, why it matters: uvicorn closes a connection that has been idle ``timeout_keep_alive`` seconds after its last
response (BentoML passes 5 s unless ``bentoml serve`` gets its hidden ``--timeout-keep-alive`` flag). A client
cannot know when that happens. If it starts its next request on the connection just as the server closes it,
the request reaches a closed socket, the kernel answers with a reset, and the client sees the connection drop
while reading the response (httpx: ``ReadError``). POST is not idempotent, so clients do not retry it: the
request fails. The race is inherent to HTTP/1.1; it is avoided by letting the *client* end idle connections:
the server's keep-alive timeout must be longer than the idle timeout of any client or proxy in front of it
(httpx 5 s, aiohttp 15 s, AWS ALB and nginx upstreams 60 s, Go's ``http.Transport`` 90 s). A client that
closes an idle connection itself never loses a request.

``bentoml serve .`` (the documented way to run the service) does not pass that flag; an explicit
``bentoml serve --timeout-keep-alive N`` (BentoML passes it on to the worker's command line) still wins.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from typing import Any

from .connection import ConnectionLimits, protocol_class

BENTOML_FLAG = "--timeout-keep-alive"

_seconds: int | None = None  # what configure_uvicorn() last asked for (None: BentoML's flag governs)
_protocol: type | None = None  # the HTTP protocol class configure_uvicorn() installed


def explicit_flag(argv: Sequence[str]) -> bool:
    """Whether this process's command line carries BentoML's ``--timeout-keep-alive`` (given by the user)."""
    return any(a == BENTOML_FLAG or a.startswith(BENTOML_FLAG + "=") for a in argv)


def configure_uvicorn(seconds: int, limits: ConnectionLimits | None = None, argv: Sequence[str] | None = None) -> bool:
    """Make uvicorn servers configured from now on in this process use the connection edge with
    ``limits`` and keep idle connections ``seconds`` seconds. The keep-alive is left alone (returns False)
    when the command line already sets BentoML's flag. Idempotent: one wrapper, the latest values."""
    global _seconds, _protocol
    import uvicorn

    explicit = explicit_flag(sys.argv if argv is None else argv)
    _seconds = None if explicit else seconds
    _protocol = protocol_class(limits or ConnectionLimits())
    original = uvicorn.Config.__init__
    if not getattr(original, "__imgserve_config__", False):

        @functools.wraps(original)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            if _seconds is not None:
                self.timeout_keep_alive = _seconds
            if _protocol is not None and self.http in ("auto", "h11", "httptools"):
                self.http = _protocol
                self.h11_max_incomplete_event_size = _protocol.limits.max_header_bytes

        __init__.__imgserve_config__ = True  # type: ignore[attr-defined]
        uvicorn.Config.__init__ = __init__  # type: ignore[method-assign]
    return not explicit


def effective_keep_alive() -> int | None:
    """The value applied by :func:`configure_uvicorn` (None when BentoML's own flag or default governs)."""
    return _seconds
