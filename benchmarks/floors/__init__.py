"""Floors: servers that do no work, to measure what the HTTP stack and BentoML cost by themselves.

Each answers ``POST /predict`` with a fixed JSON body after reading the whole request; ``GET /readyz`` answers 200.
``uvicorn_bare`` is uvicorn + httptools + uvloop with a raw ASGI app (what BentoML's workers run underneath);
``bentoml_floor`` is ``bentoml serve`` with imgserve's service config, answering from a middleware added with
``Service.add_asgi_middleware``, where imgserve's hot routes sit (serving/lean.py): the cheapest request any
design under BentoML can have. Compare them with ``python -m benchmarks.ab`` (docs/serving.md, round 6)::

    taskset -c 1 python -m benchmarks.floors.uvicorn_bare --port 9101 &
    BENTOML_HOME=/tmp/floor taskset -c 1 python -m bentoml serve benchmarks.floors.bentoml_floor:Floor --port 9102 &
    taskset -c 0 python -m benchmarks.ab bare=http://127.0.0.1:9101/predict@PID1 \\
        bentoml=http://127.0.0.1:9102/predict@PID2 -c 32 --encoding raw --rounds 4 --duration 6
"""

from __future__ import annotations

from typing import Any

ANSWER = b'{"label":"Ankle boot","score":0.9,"top_k":[{"label":"Ankle boot","score":0.9}]}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]


async def answer(scope: dict[str, Any], receive: Any, send: Any) -> bool:
    """Answer ``POST /predict`` (the body read to its end) and ``GET /readyz``; False for anything else."""
    if scope["type"] != "http" or scope["path"] not in ("/predict", "/readyz"):
        return False
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})
    return True
