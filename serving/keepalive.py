"""HTTP/1.1 keep-alive of the BentoML worker's uvicorn server: ``IMGSERVE_KEEP_ALIVE_S`` (default 120 s).

Why it matters: uvicorn closes a connection that has been idle ``timeout_keep_alive`` seconds after its last
response (BentoML passes 5 s unless ``bentoml serve`` gets its hidden ``--timeout-keep-alive`` flag). A client
cannot know when that happens. If it starts its next request on the connection just as the server closes it,
the request reaches a closed socket, the kernel answers with a reset, and the client sees the connection drop
while reading the response (httpx: ``ReadError``). POST is not idempotent, so clients do not retry it: the
request fails. The race is inherent to HTTP/1.1; it is avoided by letting the *client* end idle connections:
the server's keep-alive timeout must be longer than the idle timeout of any client or proxy in front of it
(httpx 5 s, aiohttp 15 s, AWS ALB and nginx upstreams 60 s, Go's ``http.Transport`` 90 s). A client that
closes an idle connection itself never loses a request.

BentoML 1.4 has no service or bentofile setting for it, and ``bentoml serve .`` (the documented way to run
the service) does not pass the flag, so the service applies its setting itself: :func:`apply_keep_alive`,
called when BentoML's worker imports ``service.py`` -- before the worker builds its ``uvicorn.Config`` --
makes every ``uvicorn.Config`` built afterwards in this process use our value. An explicit
``bentoml serve --timeout-keep-alive N`` (BentoML passes it on to the worker's command line) still wins.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from typing import Any

BENTOML_FLAG = "--timeout-keep-alive"

_seconds: int | None = None  # what apply_keep_alive() last asked for (None: not applied)


def explicit_flag(argv: Sequence[str]) -> bool:
    """Whether this process's command line carries BentoML's ``--timeout-keep-alive`` (given by the user)."""
    return any(a == BENTOML_FLAG or a.startswith(BENTOML_FLAG + "=") for a in argv)


def apply_keep_alive(seconds: int, argv: Sequence[str] | None = None) -> bool:
    """Make uvicorn servers configured from now on in this process keep idle connections ``seconds`` seconds.
    Returns False (and changes nothing) when the command line already sets BentoML's flag. Idempotent."""
    global _seconds
    if explicit_flag(sys.argv if argv is None else argv):
        return False
    import uvicorn

    _seconds = seconds
    original = uvicorn.Config.__init__
    if getattr(original, "__imgserve_keep_alive__", False):
        return True  # already wrapped; the wrapper reads the module global

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if _seconds is not None:
            self.timeout_keep_alive = _seconds

    __init__.__imgserve_keep_alive__ = True  # type: ignore[attr-defined]
    uvicorn.Config.__init__ = __init__  # type: ignore[method-assign]
    return True


def effective_keep_alive() -> int | None:
    """The value applied by :func:`apply_keep_alive` (None when BentoML's own flag or default governs)."""
    return _seconds
