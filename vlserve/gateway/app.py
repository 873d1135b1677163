"""The gateway app: routes, the request guard, CORS, error handlers, the OpenAPI document.

:func:`create_app` connects to nothing; the lifespan starts the Triton watcher and loads the indexes
in the background, so ``/healthz`` answers at once and ``/readyz`` says when everything is there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException

import vlserve
from vlserve.api import schemas
from vlserve.errors import ModelUnavailable, NotFound, VLServeError
from vlserve.gateway.direct import DirectRoutes, direct_routes
from vlserve.gateway.errors import error_response, invalid_request
from vlserve.gateway.fetch import UrlFetcher
from vlserve.gateway.guard import RequestGuard
from vlserve.gateway.images import ImageResolver
from vlserve.gateway.indexes import IndexService
from vlserve.gateway.metrics import Metrics
from vlserve.gateway.registry import Registry
from vlserve.gateway.routes import classify, dense, embeddings, search, system
from vlserve.gateway.state import Gateway, Limits
from vlserve.settings import Settings

log = logging.getLogger("vlserve.gateway")
DESCRIPTION = """vlserve's HTTP gateway: embeddings (OpenAI-compatible), zero-shot classification, ranking,
index search, detection and segmentation, served by NVIDIA Triton. Errors answer
`{"error": {"type", "message", "param", "item"}}` with the status of their type (docs/errors.md).
When API keys are set, every route but `/healthz` needs `Authorization: Bearer <key>`."""
# schemas the routes read themselves (vlserve.gateway.body): added to the OpenAPI components
REQUEST_SCHEMAS = (schemas.EmbeddingsRequest, schemas.ClassifyRequest, schemas.ClassifyForm, schemas.RankRequest,
                   schemas.SearchRequest, schemas.SearchForm, schemas.DetectRequest, schemas.SegmentRequest)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    keys = settings.api_key_list()
    metrics = Metrics()
    fetcher = UrlFetcher(settings.url_allowed_hosts, settings.max_image_bytes, settings.url_timeout_s) \
        if settings.url_fetch else None
    gw = Gateway(settings, Registry(settings.triton_url, settings.triton_protocol, settings.model,
                                      coalesce=settings.embed_coalesce,
                                      on_rows=lambda kind, n: metrics.triton_rows.labels(kind).observe(n)),
                 IndexService(settings.index_dir), ImageResolver(settings.max_image_bytes, fetcher),
                 Limits.of(settings), metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gw.registry.start(on_change=lambda ready: metrics.triton_ready.set(1 if ready else 0))
        loading = asyncio.create_task(gw.indexes.load())
        try:
            yield
        finally:
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
            await gw.registry.close()
            await gw.indexes.close()
            if fetcher is not None:
                await fetcher.close()

    app = FastAPI(title="vlserve", version=vlserve.__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.gateway = gw
    routers = [m.router for m in (embeddings, classify, search, dense, system)]
    for router in routers:
        app.include_router(router)
    on_error = _add_error_handlers(app, gw)
    routes = frozenset(getattr(r, "path", "") for router in routers for r in router.routes)
    app.add_middleware(DirectRoutes, routes=direct_routes(r for router in routers for r in router.routes),
                       on_error=on_error)  # inside the guard
    app.add_middleware(RequestGuard, metrics=metrics, keys=keys, max_body_bytes=settings.max_body_bytes,
                       max_in_flight=settings.max_in_flight, retry_after_s=settings.retry_after_s, routes=routes)
    if settings.cors_origins:  # outermost: a preflight is answered before the key check
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], max_age=600)
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
    return app


def _add_error_handlers(app: FastAPI, gw: Gateway) -> Callable[[Request, Exception], Awaitable[Response]]:
    """FastAPI's exception handlers, by the error table; returns the same dispatch for
    :class:`~vlserve.gateway.direct.DirectRoutes`."""
    retry = gw.settings.retry_after_s

    def answer(error: VLServeError, status: int | None = None, headers: dict[str, str] | None = None) -> Response:
        gw.metrics.errors.labels(error.code).inc()
        return error_response(error, retry, status, headers)

    async def on_vlserve_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, VLServeError)
        if type(exc) is VLServeError:
            log.error("internal error on %s %s: %s", request.method, request.url.path, exc)
            exc = VLServeError("internal error (logged by the gateway)")
        elif isinstance(exc, ModelUnavailable):  # the transport's details (addresses, gRPC status) stay here
            log.debug("model server unavailable on %s %s: %s", request.method, request.url.path, exc)
            exc = ModelUnavailable("the model server is unavailable (down, restarting or still loading); retry "
                                   f"after {retry} s")
        return answer(exc)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return answer(invalid_request(exc.errors()))

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if isinstance(exc.__cause__, VLServeError):
            return answer(exc.__cause__)
        if exc.status_code == 404:
            return answer(NotFound(f"no route {request.method} {request.url.path}"))
        error = VLServeError(str(exc.detail))
        error.code = "method_not_allowed" if exc.status_code == 405 else "http_error"
        return answer(error, exc.status_code, dict(exc.headers or {}))

    async def on_bug(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return answer(VLServeError("internal error (logged by the gateway)"))

    handlers: list[tuple[type[Exception], Callable[[Request, Exception], Awaitable[Response]]]] = [
        (VLServeError, on_vlserve_error), (RequestValidationError, on_validation_error),
        (HTTPException, on_http_error), (Exception, on_bug)]
    for kind, handler in handlers:
        app.add_exception_handler(kind, handler)

    async def on_error(request: Request, exc: Exception) -> Response:
        return await next(h for kind, h in handlers if isinstance(exc, kind))(request, exc)

    return on_error


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, plus the request schemas routes read themselves; cached on the app."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    for model in REQUEST_SCHEMAS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
    app.openapi_schema = doc
    return doc
