"""``POST /v1/embeddings``: OpenAI's embeddings API, so the official SDK works unchanged; data-URI
(or URL) inputs are embedded as images, in the same space as the texts."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Awaitable

import numpy as np
from fastapi import APIRouter, Request, Response

from vlserve.api.schemas import EmbeddingsRequest, EmbeddingsResponse
from vlserve.errors import InvalidInput, Unsupported, VLServeError
from vlserve.gateway.body import body_doc
from vlserve.gateway.images import is_image_ref
from vlserve.gateway.registry import DeployedModel
from vlserve.gateway.routes.common import ERRORS, json_response
from vlserve.gateway.state import model_request

router = APIRouter()
_TOKEN = re.compile(r"\w+|[^\w\s]")


@router.post("/v1/embeddings", response_model=EmbeddingsResponse, responses=ERRORS, tags=["embeddings"],
             summary="Embed texts and images (OpenAI-compatible)", openapi_extra=body_doc(EmbeddingsRequest))
async def embeddings(request: Request) -> Response:
    gw, req, model = await model_request(request, EmbeddingsRequest)
    model.check_dimensions(req.dimensions)
    inputs = [req.input] if isinstance(req.input, str) else req.input
    if not inputs:
        raise InvalidInput("input is empty: give a string or a non-empty list of strings", field="input")
    if not all(isinstance(x, str) for x in inputs):
        raise Unsupported("token-id input is not supported: send texts, or images as data URIs", field="input")
    strings: list[str] = inputs  # type: ignore[assignment]  # every item checked above
    texts = [(i, x) for i, x in enumerate(strings) if not is_image_ref(x)]
    images = [(i, x) for i, x in enumerate(strings) if is_image_ref(x)]
    gw.limits.texts([x for _, x in texts], "input", [i for i, _ in texts])
    gw.limits.images(len(images), "input")
    image_bytes = await gw.images.resolve([x for _, x in images], "input", [i for i, _ in images])
    text_calls = _in_input(embed_texts(model, [x for _, x in texts], req.dimensions), [i for i, _ in texts])
    image_calls = _in_input(embed_images(model, image_bytes, req.dimensions), [i for i, _ in images])
    if texts and images:
        text_emb, image_emb = await asyncio.gather(text_calls, image_calls)
    else:  # one side has nothing to do: no tasks to schedule
        text_emb, image_emb = await text_calls, await image_calls
    vectors: list[np.ndarray] = [np.empty(0)] * len(strings)
    for (i, _), v in [*zip(texts, text_emb, strict=True), *zip(images, image_emb, strict=True)]:
        vectors[i] = v
    tokens = sum(len(_TOKEN.findall(x)) for _, x in texts) + len(images)
    data = [{"object": "embedding", "index": i, "embedding": _encode(v, req.encoding_format)}
            for i, v in enumerate(vectors)]
    body = {"object": "list", "data": data, "model": model.id,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    return json_response(body)


async def _in_input(call: Awaitable[np.ndarray], places: list[int]) -> np.ndarray:
    """``call``'s rows; an error naming an item is renumbered to that item's place in ``input``."""
    try:
        return await call
    except VLServeError as e:
        if e.item is not None and 0 <= e.item < len(places):
            e.item, e.field = places[e.item], "input"
        raise


def _encode(vector: np.ndarray, encoding: str) -> np.ndarray | str:
    """float: the float32 array itself (written by orjson); base64: of its little-endian bytes (OpenAI's)."""
    vector = np.ascontiguousarray(vector, dtype="<f4")
    return base64.b64encode(vector.tobytes()).decode() if encoding == "base64" else vector


async def embed_texts(model: DeployedModel, texts: list[str], dimensions: int | None) -> np.ndarray:
    if not texts:
        return np.zeros((0, dimensions or model.dimensions), np.float32)
    return await model.embed("text_encoder", texts, dimensions)


async def embed_images(model: DeployedModel, images: list[bytes], dimensions: int | None) -> np.ndarray:
    if not images:
        return np.zeros((0, dimensions or model.dimensions), np.float32)
    return await model.embed("image_encoder", images, dimensions)
