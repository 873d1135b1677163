"""Routes answered straight from the ASGI scope, below the request guard.

Every JSON route of the gateway reads its own body (:mod:`vlserve.gateway.body`) and returns a finished
``Response``: it takes nothing from FastAPI's per-request machinery (dependency solving, its exit
stack, route matching by pattern, the request/response wrappers), which on two cores cost about as
much CPU as the route's own work for a one-text embedding (py-spy, benchmarks/bench_gateway.py). So
such routes are called directly by (method, path); FastAPI still declares them (the OpenAPI document
and /docs come from it) and answers everything else: other methods (405), unknown paths (404), routes
that take parameters. Errors go through the same handler as FastAPI's (one table, docs/errors.md).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from vlserve.gateway.guard import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]
ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


def direct_routes(routes: Iterable[Any]) -> dict[tuple[str, str], Endpoint]:
    """(method, path) -> endpoint, for each route of fixed path whose endpoint is a coroutine taking only
    the request and which declares no dependencies. Give it the routers' own routes: dependencies added
    by ``include_router(..., dependencies=...)`` are not seen here (the gateway adds none)."""
    table: dict[tuple[str, str], Endpoint] = {}
    for route in routes:
        if not isinstance(route, APIRoute) or route.param_convertors or route.dependencies:
            continue
        params = list(inspect.signature(route.endpoint).parameters.values())
        if not inspect.iscoroutinefunction(route.endpoint) or len(params) != 1 \
                or params[0].annotation not in (Request, "Request"):
            continue
        for method in route.methods or ():
            table[(method, route.path)] = route.endpoint
    return table


class DirectRoutes:
    """ASGI middleware: a request whose (method, path) is in ``routes`` is answered by that endpoint;
    anything else goes on to ``app``."""

    def __init__(self, app: ASGIApp, *, routes: dict[tuple[str, str], Endpoint], on_error: ErrorHandler) -> None:
        self.app = app
        self.routes = routes
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.routes.get((scope.get("method", ""), scope.get("path", ""))) \
            if scope["type"] == "http" else None
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Exception as e:
            response = await self.on_error(request, e)
        await response(scope, receive, send)
