"""The deployment: ``GET /v1/models``, ``/v1/indexes``, ``/healthz``, ``/readyz``, ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from vlserve.api.schemas import Health, IndexList, ModelList, Readiness
from vlserve.gateway.routes.common import ERRORS, json_response
from vlserve.gateway.state import gateway

router = APIRouter()


@router.get("/v1/models", response_model=ModelList, responses=ERRORS, tags=["deployment"],
            summary="Deployed models: family, dimensions, Matryoshka prefixes, capabilities")
async def models(request: Request) -> Response:
    registry = gateway(request).registry
    return json_response({"object": "list", "data": [
        {"id": m.id, "object": "model", "created": 0, "owned_by": "vlserve", "family": m.info["family"],
         "fingerprint": m.fingerprint, "dimensions": m.dimensions, "matryoshka_dimensions": m.matryoshka_dims,
         "allowed_dimensions": m.allowed_dimensions, "scoring_rule": m.info["scoring_rule"],
         "capabilities": m.capabilities, "triton_models": sorted(m.triton_models.values())}
        for m in registry.models.values()]})


@router.get("/v1/indexes", response_model=IndexList, responses=ERRORS, tags=["deployment"],
            summary="Indexes loaded from the index dir, with the model each belongs to")
async def indexes(request: Request) -> Response:
    gw = gateway(request)
    await gw.indexes.refresh()
    cards = []
    for name, index in gw.indexes.indexes.items():
        m = index.manifest
        served = gw.registry.by_fingerprint(m.fingerprint)
        cards.append({"name": name, "model": m.model_spec, "fingerprint": m.fingerprint, "dimensions": m.dim,
                      "coarse_dimensions": m.coarse_dims, "factory": m.factory, "count": m.count,
                      "text_count": m.text_count, "served_by": served.id if served else None})
    return json_response({"object": "list", "data": cards, "failed": gw.indexes.failed})


@router.get("/healthz", response_model=Health, tags=["deployment"], summary="The gateway process answers")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}}, tags=["deployment"],
            summary="Triton is ready, its models are discovered and the indexes are loaded")
async def readyz(request: Request) -> Response:
    gw = gateway(request)
    reg = gw.registry
    reason = None if gw.ready else ("Triton is not ready" if not reg.triton_ready else
                                    "no model discovered yet" if not reg.models else "indexes still loading")
    response = json_response({"status": "ready" if reason is None else "not_ready", "triton": reg.triton_ready,
                              "models": list(reg.models), "indexes_loaded": gw.indexes.loaded, "reason": reason})
    if reason is not None:
        response.status_code = 503
        response.headers["Retry-After"] = str(gw.settings.retry_after_s)
    return response


@router.get("/metrics", tags=["deployment"], summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
async def metrics(request: Request) -> Response:
    m = gateway(request).metrics
    return Response(m.render(), media_type=m.content_type)
