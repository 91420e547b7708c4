"""The HTTP front end's pieces without a server: top_k, the request observer (route labels, 500s, 499s)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest
from fastapi import Request

from inference.errors import (
    ClientDisconnected,
    InvalidInput,
)
from serving.http import create_app, parse_top_k
from serving.settings import ServeSettings


@pytest.mark.parametrize(("raw", "k"), [(None, 5), ("", 5), ("1", 1), (" 7 ", 7), ("1000", 1000)])
def test_parse_top_k(raw: str | None, k: int) -> None:
    assert parse_top_k(raw, 5) == k


@pytest.mark.parametrize("raw", ["0", "-1", "x", "2.5", "1001"])
def test_parse_top_k_rejects(raw: str) -> None:
    with pytest.raises(InvalidInput, match="top_k must be an integer"):
        parse_top_k(raw, 5)


def test_unexpected_errors_become_a_generic_500(caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(ServeSettings(access_log=True))

    @app.get("/model")
    async def boom(request: Request) -> None:
        raise RuntimeError("secret /etc/passwd detail")

    @app.post("/predict")
    async def invalid(request: Request) -> None:
        raise InvalidInput("the image is empty (0 bytes)")

    async def main() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/model"), await client.post("/predict")

    with caplog.at_level(logging.INFO):
        crashed, rejected = asyncio.run(main())
    assert crashed.status_code == 500
    assert crashed.json() == {"error": "internal server error; the server log has the details", "type": "internal_error"}
    assert "passwd" not in crashed.text
    assert rejected.status_code == 400 and rejected.json()["type"] == "invalid_input"
    assert any("secret /etc/passwd detail" in (r.exc_text or "") for r in caplog.records)  # logged, with traceback
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "imgserve.access"]
    assert [(line["path"], line["status"]) for line in lines] == [("/model", 500), ("/predict", 400)]
    assert lines[1]["error"] == "the image is empty (0 bytes)"


def test_a_client_that_leaves_mid_body_is_logged_as_499_not_as_a_bad_request(caplog: pytest.LogCaptureFixture) -> None:
    """A disconnect while the body is read is the client's doing: 499 in the log and metrics (nginx's "client
    closed request"), never a 400 that would read as a request we refused."""
    from serving.edge import read_body

    app = create_app(ServeSettings(access_log=True))

    @app.post("/predict")
    async def predict(request: Request) -> bytes:
        return await read_body(request, 1000)

    async def main() -> list[dict]:
        sent: list[dict] = []
        messages = iter([{"type": "http.request", "body": b"abc", "more_body": True}, {"type": "http.disconnect"}])

        async def receive() -> dict:
            return next(messages)

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/predict", "headers": [(b"content-type", b"image/png")],
                 "query_string": b"", "client": ("127.0.0.1", 5000), "server": ("t", 80), "scheme": "http"}
        await app(scope, receive, send)
        return sent

    with caplog.at_level(logging.INFO):
        sent = asyncio.run(main())
    assert sent[0]["status"] == 499
    (line,) = [json.loads(r.getMessage()) for r in caplog.records if r.name == "imgserve.access"]
    assert line["status"] == 499 and "closed the connection" in line["error"]
    assert issubclass(ClientDisconnected, InvalidInput)


def test_metrics_are_labelled_by_the_matched_route_template() -> None:
    """The endpoint label is the route that matched (bounded, no per-request paths), so a new route needs no
    edit in the observer; unmatched paths share one label."""
    from fastapi import APIRouter

    from serving.metrics import ServingMetrics

    app = create_app(ServeSettings(access_log=False))
    router = APIRouter(prefix="/v2")

    @router.get("/models/{name}/ready")
    async def ready(name: str) -> dict:
        return {"name": name}

    app.include_router(router)
    counter = ServingMetrics.get().requests

    def count(endpoint: str, status: str) -> float:
        return counter.labels(endpoint, "http", status)._value.get()

    before = count("/v2/models/{name}/ready", "200"), count("other", "404")

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for name in ("a", "b", "c"):
                assert (await client.get(f"/v2/models/{name}/ready")).status_code == 200
            assert (await client.get("/nowhere/at/all")).status_code == 404

    asyncio.run(main())
    assert count("/v2/models/{name}/ready", "200") == before[0] + 3
    assert count("other", "404") == before[1] + 1


def test_the_inference_token_guards_everything_but_probes_and_reload() -> None:
    """IMGSERVE_API_TOKEN: 401 in the one JSON shape before the route runs; probes and /reload (its own
    admin token) stay open. BentoML's /livez, /readyz and /metrics never reach this app."""
    from serving.http import needs_token

    app = create_app(ServeSettings(access_log=False, api_token="s3cret"))
    reached: list[str] = []

    @app.get("/model")
    @app.get("/v2/health/ready")
    @app.get("/v2/models/{name}/ready")
    async def route(request: Request) -> dict:
        reached.append(request.url.path)
        return {}

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [
                await client.get("/model"),
                await client.get("/model", headers={"Authorization": "Bearer nope"}),
                await client.get("/model", headers={"Authorization": "Bearer s3cret"}),
                await client.get("/v2/health/ready"),
                await client.get("/v2/models/tiny/ready"),
            ]

    missing, wrong, ok, health, ready = asyncio.run(main())
    for r in (missing, wrong):
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json()["type"] == "unauthorized" and "IMGSERVE_API_TOKEN" in r.json()["error"]
    assert ok.status_code == health.status_code == ready.status_code == 200
    assert reached == ["/model", "/v2/health/ready", "/v2/models/tiny/ready"]
    assert not needs_token("/reload") and needs_token("/predict") and needs_token("/v2/models/tiny/infer")


def test_lean_routes_skip_fastapi_layers_and_answer_as_fastapi_would(caplog: pytest.LogCaptureFixture) -> None:
    """serving/lean.py: a @lean endpoint is called from the middleware (no FastAPI per-request layers, e.g. its per-request
    AsyncExitStack), with its path parameters; errors, the route label, 405s and plain routes are unchanged."""
    from fastapi import APIRouter
    from starlette.exceptions import HTTPException

    from serving.lean import lean
    from serving.metrics import ServingMetrics

    app = create_app(ServeSettings(access_log=True))
    router = APIRouter(prefix="/v2")
    seen: list[tuple[str, bool]] = []

    @router.post("/models/{name}/infer")
    @router.post("/models/{name}/versions/{version}/infer")
    @lean
    async def infer(name: str, request: Request) -> dict:
        seen.append((name, "fastapi_inner_astack" in request.scope))
        if name == "bad":
            raise InvalidInput("no such tensor")
        if name == "gone":
            raise HTTPException(410, "gone")
        from starlette.responses import JSONResponse

        return JSONResponse({"name": name, "version": request.path_params.get("version")})

    @router.post("/models/{name}/plain")
    async def plain(name: str, request: Request) -> dict:
        seen.append((name, "fastapi_inner_astack" in request.scope))
        return {"name": name}

    app.include_router(router)  # after the app (and its middleware) exists, as service.py does
    counter = ServingMetrics.get().requests
    label = "/v2/models/{name}/versions/{version}/infer"
    before = counter.labels(label, "http", "200")._value.get()

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [await client.post("/v2/models/a/infer"), await client.post("/v2/models/b/versions/3/infer"),
                    await client.post("/v2/models/bad/infer"), await client.post("/v2/models/gone/infer"),
                    await client.get("/v2/models/a/infer"), await client.post("/v2/models/p/plain")]

    with caplog.at_level(logging.INFO):
        a, b, bad, gone, get, plain_answer = asyncio.run(main())
    assert a.json() == {"name": "a", "version": None} and b.json() == {"name": "b", "version": "3"}
    assert bad.status_code == 400 and bad.json() == {"error": "no such tensor", "type": "invalid_input"}
    assert gone.status_code == 410 and gone.json() == {"error": "gone", "type": "http_error"}
    assert get.status_code == 405 and get.json()["type"] == "http_error"
    assert plain_answer.json() == {"name": "p"}
    assert seen == [("a", False), ("b", False), ("bad", False), ("gone", False), ("p", True)]
    assert counter.labels(label, "http", "200")._value.get() == before + 1
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "imgserve.access"]
    assert lines[2]["status"] == 400 and lines[2]["error"] == "no such tensor"


def test_hot_routes_reach_the_mounted_app_past_the_outer_apps_own_layers() -> None:
    """serving/lean.py's HotRoutes, as service.py installs it in BentoML's outer app: a lean route goes straight
    to the mounted app (its observer, token guard, lean dispatch); any other request takes the outer app's way,
    including the mounted app's own plain routes."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    from serving.lean import HotRoutes, lean

    app = create_app(ServeSettings(api_token="s3cret"))
    passed_outer_layers: list[str] = []

    @app.post("/predict")
    @lean
    async def predict(request: Request) -> dict:
        from starlette.responses import JSONResponse

        return JSONResponse({"hot": "fastapi_inner_astack" not in request.scope})

    @app.get("/model")
    async def model() -> dict:
        return {"plain": True}

    class OuterLayer:  # stands for what BentoML runs after its service middlewares (its request context)
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
            passed_outer_layers.append(scope["path"])
            await self.inner(scope, receive, send)

    outer = Starlette(
        routes=[Route("/livez", lambda r: PlainTextResponse("live")), Mount("/", app)],
        middleware=[Middleware(HotRoutes, target=app), Middleware(OuterLayer)],
    )

    async def main() -> list[httpx.Response]:
        auth = {"authorization": "Bearer s3cret"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=outer), base_url="http://t") as client:
            return [await client.post("/predict", headers=auth), await client.post("/predict"),
                    await client.get("/model", headers=auth), await client.get("/livez")]

    hot, unauthorized, plain, live = asyncio.run(main())
    assert hot.json() == {"hot": True} and unauthorized.status_code == 401
    assert plain.json() == {"plain": True} and live.text == "live"
    assert passed_outer_layers == ["/model", "/livez"]
