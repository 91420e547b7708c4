"""uvicorn + httptools + uvloop serving a raw ASGI app that answers at once: the HTTP stack's own cost per request."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from . import answer


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if not await answer(scope, receive, send):
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    p = argparse.ArgumentParser(prog="python -m benchmarks.floors.uvicorn_bare", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    uvicorn.run(app, host=args.host, port=args.port, http="httptools", loop="uvloop", log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()
