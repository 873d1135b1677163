"""What the route modules share: JSON answers, per-image calls, the documented error answers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import orjson
from fastapi import Response

from vlserve.api.schemas import ErrorBody
from vlserve.errors import VLServeError

T = TypeVar("T")
_ERROR_STATUSES = {
    400: "invalid input (the message names the field and item)",
    401: "missing or wrong API key (when keys are set)",
    404: "unknown model, index, head or item; a Triton model that is not deployed",
    413: "request body over VLSERVE_MAX_BODY_BYTES",
    415: "a content type the route does not take",
    422: "well-formed, but the model cannot do it",
    429: "too many requests in flight; retry after Retry-After seconds",
    503: "Triton is down or not ready; retry after Retry-After seconds",
}
ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": ErrorBody, "description": d}
                                           for s, d in _ERROR_STATUSES.items()}


def json_response(body: dict[str, Any]) -> Response:
    """A JSON answer built directly (routes build plain dicts, numpy arrays included; their schema is the
    route's response_model). float32 values are written with the digits that round-trip float32."""
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


async def each_image(images: Sequence[bytes], call: Callable[[bytes], Awaitable[T]]) -> list[T]:
    """``call(image)`` for every image at once (one Triton request each: Triton batches them); an error
    about the image names its position in ``images``."""

    async def one(i: int, image: bytes) -> T:
        try:
            return await call(image)
        except VLServeError as e:
            if e.field in ("image", "IMAGE"):  # the model saw one image: say which of ours it was
                e.field, e.item = "images", i
            raise

    return list(await asyncio.gather(*(one(i, image) for i, image in enumerate(images))))
