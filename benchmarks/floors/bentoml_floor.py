"""``bentoml serve benchmarks.floors.bentoml_floor:Floor``: BentoML 1.4 with imgserve's service config (one worker),
answering ``POST /predict`` from an ASGI middleware added with ``Service.add_asgi_middleware``, where imgserve's
hot routes sit. Everything BentoML does per request outside that point still runs: its Starlette app, error
middleware, traffic metrics, timeout middleware and uvicorn's proxy headers."""

from __future__ import annotations

from typing import Any

import bentoml
from fastapi import FastAPI

from serving.settings import ServeSettings

from . import answer

app = FastAPI()


class AnswerAtOnce:
    def __init__(self, app: Any, **_: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not await answer(scope, receive, send):
            await self.app(scope, receive, send)


@bentoml.service(name="floor", **{**ServeSettings().service_config(), "workers": 1})
@bentoml.asgi_app(app, path="/")
class Floor:
    pass


Floor.add_asgi_middleware(AnswerAtOnce)
