"""A lean dispatch for the hot routes (``POST /predict``, OIP REST ``infer``): the route's endpoint is called
straight from a pure ASGI middleware, past FastAPI's per-request layers.

Why: for a small image the route's own work (multipart, decode, batch, JSON) is a minority of the worker's
CPU; the rest is layers. Between our request observer and the endpoint, FastAPI runs its exception middleware,
an ``AsyncExitStack`` per request (for ``yield`` dependencies we do not have), its body-limit and telemetry
wrappers, the router's linear match over every route (the OIP router alone adds ~20), ``request_response``
with its own exception wrapper, and dependency solving (~12 % of a worker's samples under wrk at c=64, py-spy).
Our endpoints take a ``Request`` and nothing FastAPI would validate, so none of that changes their answers.

A route opts in with :func:`lean` on its endpoint; it stays a FastAPI route (OpenAPI, other methods' 405,
``scope["route"]`` for the metrics label). Errors are rendered as FastAPI's handlers would: ours and
Starlette's ``HTTPException`` in the one JSON shape (serving/edge.py); anything else goes up to the request
observer, which logs it and answers the generic 500.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import get_route_path

from inference.errors import ImgServeError

from .edge import http_error_response, imgserve_error_response

LEAN_ATTR = "__imgserve_lean__"


def lean(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a route endpoint for :class:`LeanRoutes`. It must take ``request`` plus, at most, path parameters."""
    setattr(endpoint, LEAN_ATTR, True)
    return endpoint


def _walk(routes: list[Any]) -> Iterator[Any]:
    """The routes with an endpoint, including those of routers included without a prefix or dependencies
    (FastAPI >= 0.16x keeps an included router as one ``_IncludedRouter`` entry holding ``original_router``;
    older versions copy its routes into the app's list). A router included with a prefix or dependencies is
    left to FastAPI: its routes' own paths would not say where they are served, or what must run first."""
    for route in routes:
        if getattr(route, "endpoint", None) is not None and getattr(route, "path_regex", None) is not None:
            yield route
        inner = getattr(route, "original_router", None)
        context = getattr(route, "include_context", None)
        if inner is not None and not getattr(context, "prefix", "") and not getattr(context, "dependencies", None):
            yield from _walk(inner.routes)


LEAN_MATCH = "imgserve.lean"  # scope key: the match HotRoutes already made, so LeanRoutes does not repeat it

Match = tuple[Any, Callable[..., Any], tuple[str, ...], dict[str, str]]


class LeanTable:
    """The lean routes of ``router``: built on first use and rebuilt when routes are added (the OIP router is
    included in the worker, after the app is built)."""

    def __init__(self, router: Any) -> None:
        self.router = router
        self._table: list[tuple[Any, Callable[..., Any], tuple[str, ...]]] = []
        self._seen = -1

    def _build(self) -> None:
        table = []
        for route in _walk(self.router.routes):
            endpoint = route.endpoint
            if getattr(endpoint, LEAN_ATTR, False) and not getattr(route, "dependencies", None):
                params = tuple(p for p in inspect.signature(endpoint).parameters if p != "request")
                table.append((route, endpoint, params))
        self._table, self._seen = table, len(self.router.routes)

    def match(self, scope: dict[str, Any]) -> Match | None:
        if len(self.router.routes) != self._seen:
            self._build()
        path, method = get_route_path(scope), scope["method"]
        for route, endpoint, params in self._table:
            if method in route.methods and (m := route.path_regex.match(path)):
                return route, endpoint, params, m.groupdict()
        return None


class LeanRoutes:
    """Pure ASGI middleware (innermost of the FastAPI app's): dispatches the lean routes of ``table``."""

    def __init__(self, app: Any, *, table: LeanTable) -> None:
        self.app = app
        self.table = table

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        found = scope.pop(LEAN_MATCH, None) or (self.table.match(scope) if scope["type"] == "http" else None)
        if found is None:
            await self.app(scope, receive, send)
            return
        route, endpoint, params, path_params = found
        scope["route"], scope["path_params"] = route, path_params
        kwargs = {k: path_params[k] for k in params if k in path_params}
        request = Request(scope, receive)
        try:
            response = await endpoint(request=request, **kwargs)
        except ImgServeError as exc:
            response = imgserve_error_response(request, exc)
        except HTTPException as exc:
            response = http_error_response(exc)
        await response(scope, receive, send)


class HotRoutes:
    """ASGI middleware for BentoML's outer app (``Service.add_asgi_middleware``): a request for a lean route of
    the mounted ``target`` app goes straight to that app (its request observer, token guard and lean dispatch),
    past what BentoML runs after its service middlewares: its request-context middleware (a ``Request`` and
    two context variables per request), its exception middleware, its router's walk over its own routes and
    the mount's route-by-route match of ours. BentoML's traffic metrics, tracing and timeout middlewares still
    run (they come before). Any other request takes BentoML's way."""

    def __init__(self, app: Any, *, target: Any) -> None:
        self.app = app
        self.target = target
        self.table: LeanTable = target.state.lean_table

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        found = self.table.match(scope) if scope["type"] == "http" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        scope[LEAN_MATCH] = found
        await self.target(scope, receive, send)
