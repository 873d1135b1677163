"""Image inputs of HTTP requests -> encoded bytes, within the size limit.

An image arrives as base64 of its encoded bytes, as a data URI (``data:image/png;base64,...``), as a
multipart upload, or, when the deployment turns it on, as an http(s) URL (:mod:`.fetch`). The gateway
does not decode images: Triton's models do, and refuse a corrupt, truncated or oversized one (the
pixel limit ``VLSERVE_MAX_IMAGE_PIXELS`` is checked from the header, before decoding) with an error
that names the item, which the gateway answers as a 400.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Sequence

from vlserve.errors import InvalidInput
from vlserve.gateway.fetch import UrlFetcher

URL_SCHEMES = ("http://", "https://")


def is_image_ref(value: str) -> bool:
    """Whether a string of an OpenAI-style ``input`` list is an image: a data URI or an http(s) URL
    (whether URLs are fetched is the deployment's choice; their meaning does not change with it)."""
    return value.startswith("data:") or value.startswith(URL_SCHEMES)


def decode_base64_image(ref: str, max_bytes: int) -> bytes:
    """Base64 or a base64 data URI -> bytes; refuses other data URIs, bad base64, empty and oversized."""
    if ref.startswith("data:"):
        head, sep, payload = ref.partition(",")
        if not sep:
            raise InvalidInput("malformed data URI: no ',' before the data")
        if not head.lower().endswith(";base64"):
            raise InvalidInput("data URIs must be base64-encoded (data:image/png;base64,...)")
        media = head[5:].split(";")[0].strip().lower()
        if media and not media.startswith("image/"):
            raise InvalidInput(f"data URI media type {media!r} is not an image type")
        ref = payload
    size = len(ref.rstrip("=")) * 3 // 4  # known from the length, before decoding anything
    if size > max_bytes:
        raise InvalidInput(f"image of about {size} bytes is over the limit of {max_bytes} bytes "
                           "(VLSERVE_MAX_IMAGE_BYTES)")
    try:
        raw = base64.b64decode(ref, validate=True)
    except (binascii.Error, ValueError):
        try:  # line-wrapped (MIME) or URL-safe base64
            raw = base64.b64decode("".join(ref.split()).translate(_URLSAFE), validate=True)
        except (binascii.Error, ValueError) as e:
            raise InvalidInput(f"not valid base64 ({e})") from None
    if not raw:
        raise InvalidInput("empty image (0 bytes)")
    if len(raw) > max_bytes:
        raise InvalidInput(f"image of {len(raw)} bytes is over the limit of {max_bytes} bytes "
                           "(VLSERVE_MAX_IMAGE_BYTES)")
    return raw


_URLSAFE = str.maketrans("-_", "+/")


class ImageResolver:
    """Turns a request's image references into bytes; errors name the field and the item."""

    def __init__(self, max_bytes: int, fetcher: UrlFetcher | None) -> None:
        self.max_bytes = max_bytes
        self.fetcher = fetcher

    async def resolve(self, refs: Sequence[str], field: str, items: Sequence[int] | None = None) -> list[bytes]:
        """Bytes of every reference; ``items`` are their positions in the request (default 0, 1, ...)."""
        positions = list(items) if items is not None else list(range(len(refs)))
        out: list[bytes | None] = [None] * len(refs)
        fetches = []
        for k, ref in enumerate(refs):
            try:
                if ref.startswith(URL_SCHEMES):
                    if self.fetcher is None:
                        raise InvalidInput("image URLs are not fetched by this deployment (VLSERVE_URL_FETCH is off): "
                                           "send the image as base64 or a data URI")
                    fetches.append((k, self.fetcher.fetch(ref)))
                else:
                    out[k] = decode_base64_image(ref, self.max_bytes)
            except InvalidInput as e:
                raise InvalidInput(e.message, field=field, item=positions[k]) from None
        if fetches:
            done = await asyncio.gather(*(f for _, f in fetches), return_exceptions=True)
            for (k, _), result in zip(fetches, done, strict=True):
                if isinstance(result, InvalidInput):
                    raise InvalidInput(result.message, field=field, item=positions[k])
                if isinstance(result, BaseException):
                    raise result
                out[k] = result
        return [b for b in out if b is not None]
