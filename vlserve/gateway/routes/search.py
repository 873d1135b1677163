"""``POST /v1/search``: an index under the index dir, queried by texts, images, embeddings or indexed ids.

Texts and images are embedded by Triton, by the deployed model whose fingerprint is the index's (or
the ``model`` named, which must be that one); the manifest checks the query before FAISS sees it.
The search itself is :class:`vlserve.retrieval.query.Searcher`, as in ``vlserve index search``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from vlserve.api.schemas import SearchForm, SearchRequest, SearchResponse
from vlserve.errors import IndexModelMismatch
from vlserve.gateway.body import body_doc, form_reader, read_body
from vlserve.gateway.registry import DeployedModel, Registry
from vlserve.gateway.routes.common import ERRORS, json_response
from vlserve.gateway.routes.embeddings import embed_images, embed_texts
from vlserve.gateway.state import gateway, one_of
from vlserve.retrieval.manifest import IndexManifest
from vlserve.retrieval.query import Searcher

router = APIRouter()
search_form = form_reader(files={"image": "images", "images": "images"},
                          repeated={"text": "texts", "texts": "texts", "where": "where"})


def query_model(registry: Registry, manifest: IndexManifest, name: str | None) -> DeployedModel:
    """The deployed model that embeds queries for this index: its own (same fingerprint), or refused."""
    if name is not None:
        model = registry.get(name)
        if model.fingerprint != manifest.fingerprint:
            raise IndexModelMismatch(
                f"index {manifest.name!r} was built with model {manifest.model_spec!r} (fingerprint "
                f"{manifest.fingerprint}); model {model.id!r} has fingerprint {model.fingerprint}, and embeddings "
                "of different models are not comparable: query with the index's model or rebuild the index",
                field="model")
        return model
    found = registry.by_fingerprint(manifest.fingerprint)
    if found is None:
        registry.get(None)  # no model at all: Triton is down (503), not a mismatch
        deployed = ", ".join(f"{m.id} ({m.fingerprint})" for m in registry.models.values())
        raise IndexModelMismatch(
            f"index {manifest.name!r} was built with model {manifest.model_spec!r} (fingerprint "
            f"{manifest.fingerprint}), which is not deployed (deployed: {deployed}): query it by embeddings of "
            "that model or by ids, or rebuild it with a deployed model", field="index")
    return found


@router.post("/v1/search", response_model=SearchResponse, responses=ERRORS, tags=["retrieval"],
             summary="Search an index by texts, images, embeddings or indexed ids",
             openapi_extra=body_doc(SearchRequest, SearchForm))
async def search(request: Request) -> Response:
    gw = gateway(request)
    req = await read_body(request, SearchRequest, search_form)
    kind = one_of(req, ("texts", "images", "embeddings", "ids"))
    gw.limits.k(req.k)
    await gw.indexes.refresh()
    index = gw.indexes.get(req.index)
    manifest = index.manifest
    kw: dict[str, Any] = {"k": req.k, "offset": req.offset, "dimensions": req.dimensions, "where": req.where,
                          "target": req.target}
    searcher = Searcher(index)
    if kind in ("texts", "images"):
        model = query_model(gw.registry, manifest, req.model)
        model.check_dimensions(req.dimensions)
        if req.texts is not None:
            gw.limits.texts(req.texts, "texts")
            vectors = await embed_texts(model, req.texts, None)
            labels = list(req.texts)
        else:
            assert req.images is not None
            gw.limits.images(len(req.images), "images")
            vectors = await embed_images(model, await gw.images.resolve(req.images, "images"), None)
            labels = [f"image {i}" for i in range(len(vectors))]
        pages = await gw.indexes.run(lambda: searcher.by_embedding(vectors, fingerprint=model.fingerprint, **kw))
    elif req.embeddings is not None:
        embeddings = req.embeddings  # shape, width and values are the manifest's to check
        pages = await gw.indexes.run(lambda: searcher.by_embedding(embeddings, fingerprint=req.fingerprint, **kw))
        labels = [f"embedding {i}" for i in range(len(pages))]
    else:
        assert req.ids is not None
        ids = req.ids
        pages = await gw.indexes.run(lambda: searcher.by_id(ids, **kw))
        labels = [f"id:{i}" for i in ids]
    return json_response({"index": manifest.name, "model": manifest.model_spec, "fingerprint": manifest.fingerprint,
                          "target": req.target, "count": manifest.count if req.target == "images"
                          else manifest.text_count,
                          "results": [{"query": q, **page.to_dict()} for q, page in zip(labels, pages, strict=True)]})
