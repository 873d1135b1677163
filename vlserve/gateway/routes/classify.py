"""``POST /v1/classify`` (zero-shot, by labels, descriptors or a registered head: the Triton
``zero_shot_classifier``) and ``POST /v1/rank`` (one image against texts, or one text against images)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response

from vlserve.api.schemas import ClassifyForm, ClassifyRequest, ClassifyResponse, RankRequest, RankResponse
from vlserve.errors import InvalidInput, VLServeError
from vlserve.gateway.body import body_doc, form_reader
from vlserve.gateway.registry import DeployedModel
from vlserve.gateway.routes.common import ERRORS, each_image, json_response
from vlserve.gateway.routes.embeddings import embed_images, embed_texts
from vlserve.gateway.state import model_request, one_of
from vlserve.serving.client import Classification

router = APIRouter()
classify_form = form_reader(files={"image": "images", "images": "images"},
                            repeated={"labels": "labels", "templates": "templates"}, comma=frozenset({"labels"}),
                            json_fields=frozenset({"descriptors"}))


@router.post("/v1/classify", response_model=ClassifyResponse, responses=ERRORS, tags=["zero-shot"],
             summary="Zero-shot classification of images", openapi_extra=body_doc(ClassifyRequest, ClassifyForm))
async def classify(request: Request) -> Response:
    gw, req, model = await model_request(request, ClassifyRequest, classify_form)
    model.require("zero_shot_classifier")
    model.check_dimensions(req.dimensions)
    given = one_of(req, ("labels", "descriptors", "head"))
    if req.templates is not None and given != "labels":
        raise InvalidInput("templates go with labels", field="templates")
    gw.limits.images(len(req.images), "images")
    if req.labels is not None:
        gw.limits.labels(req.labels)
    if req.descriptors is not None:
        gw.limits.descriptors(req.descriptors)
    if req.templates is not None:
        gw.limits.texts(req.templates, "templates")
    images = await gw.images.resolve(req.images, "images")
    results = await each_image(images, lambda image: model.client.classify(
        image, labels=req.labels, templates=req.templates, descriptors=req.descriptors, head=req.head,
        top_k=req.top_k, multi_label=req.multi_label, abstain_threshold=req.abstain_threshold,
        dimensions=req.dimensions))
    return json_response({"model": model.id, "fingerprint": model.fingerprint,
                          "results": [_classification(c) for c in results]})


def _classification(c: Classification) -> dict[str, Any]:
    labels = []
    for label, score in zip(c.labels, c.scores, strict=True):
        row: dict[str, Any] = {"label": label, "score": score}
        if c.explanation.get(label):
            row["explanation"] = c.explanation[label]
        labels.append(row)
    return {"labels": labels, "rule": c.rule, "multi_label": c.multi_label, "abstained": c.abstained}


@router.post("/v1/rank", response_model=RankResponse, responses=ERRORS, tags=["zero-shot"],
             summary="Rank candidate texts for an image, or candidate images for a text",
             openapi_extra=body_doc(RankRequest))
async def rank(request: Request) -> Response:
    gw, req, model = await model_request(request, RankRequest)
    model.check_dimensions(req.dimensions)
    query_kind = one_of(req, ("text", "image"))
    wanted, unwanted = ("images", "texts") if query_kind == "text" else ("texts", "images")
    candidates = getattr(req, wanted)
    if candidates is None or getattr(req, unwanted) is not None:
        raise InvalidInput(f"a{'n' if query_kind == 'image' else ''} {query_kind} query ranks {wanted}: "
                           f"give {wanted} (and no {unwanted})", field=wanted)
    if req.text is not None:
        gw.limits.texts([req.text], "text")
        gw.limits.images(len(candidates), "images")
        images = await gw.images.resolve(candidates, "images")
        query, found = await asyncio.gather(embed_texts(model, [req.text], req.dimensions),
                                            embed_images(model, images, req.dimensions))
    else:
        assert req.image is not None
        gw.limits.texts(candidates, "texts")
        image = await gw.images.resolve([req.image], "image")
        query, found = await asyncio.gather(_query_image(model, image, req.dimensions),
                                            embed_texts(model, candidates, req.dimensions))
    scores = found @ query[0]
    order = np.argsort(-scores, kind="stable")[: req.top_k]
    return json_response({"model": model.id, "fingerprint": model.fingerprint,
                          "ranking": [{"index": int(i), "score": float(scores[i])} for i in order]})


async def _query_image(model: DeployedModel, image: list[bytes], dimensions: int | None) -> np.ndarray:
    try:
        return await embed_images(model, image, dimensions)
    except VLServeError as e:
        if e.item is not None:  # the one query image: not item 0 of a list
            e.field, e.item = "image", None
        raise
