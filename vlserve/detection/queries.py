"""Queries: text descriptions, or example images (optionally a box in each), turned into the
embeddings the class head scores boxes against.

Text query embeddings come through the text-embedding cache, keyed by (model fingerprint, query
text), so a repeated query set costs no text-tower pass. An image query costs one image-tower pass
over the query image; the embedding of one of its predicted boxes is the query
(:meth:`~vlserve.models.detector.Detector.image_query`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from vlserve.api.schemas import MAX_QUERIES
from vlserve.errors import InvalidInput
from vlserve.models.detector import Box, Detector
from vlserve.models.images import ImageInput
from vlserve.models.text_cache import TextEmbeddingCache


@dataclass(frozen=True)
class QuerySet:
    """What a detection call looks for: one label and one embedding row per query."""

    kind: Literal["text", "image"]
    labels: list[str]
    embeddings: np.ndarray  # [Q, D] float32, as the class head takes them
    patches: list[int] | None = None  # image queries: the query image's patch each came from

    def __len__(self) -> int:
        return len(self.labels)


def _check_count(n: int, field: str, what: str) -> None:
    if n == 0:
        raise InvalidInput(f"no {what} given (empty list)", field=field)
    if n > MAX_QUERIES:
        raise InvalidInput(f"{n} {what} exceed the limit of {MAX_QUERIES} per request", field=field)


def text_queries(model: Detector, texts: Sequence[str], cache: TextEmbeddingCache | None = None) -> QuerySet:
    """Validate ``texts`` (non-empty, distinct, within the model's token limit, at most
    :data:`MAX_QUERIES`) and embed them, through ``cache`` when given."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    _check_count(len(texts), "queries", "queries")
    texts = model.check_queries(texts)
    dups = sorted(t for t, n in Counter(texts).items() if n > 1)
    if dups:
        raise InvalidInput(f"duplicate queries: {', '.join(repr(d) for d in dups[:10])}", field="queries")
    emb = cache.encode(model, texts) if cache is not None else model.encode_texts(texts)
    return QuerySet("text", texts, emb)


def image_queries(model: Detector, images: Sequence[ImageInput], boxes: Sequence[Box | None] | None = None
                  ) -> QuerySet:
    """One query per example image: the whole image (each family's own rule) or the box given for it
    (x0, y0, x1, y1 in that image's pixels, inside it)."""
    images = list(images)
    _check_count(len(images), "query_images", "query images")
    box_list: list[Box | None] = [None] * len(images) if boxes is None else list(boxes)
    if len(box_list) != len(images):
        raise InvalidInput(f"{len(box_list)} query boxes for {len(images)} query images: give one box per query "
                           "image (or none)", field="query_boxes")
    try:
        pixels, sizes = model.preprocess(images)
    except InvalidInput as e:
        if e.field == "image":
            e.field = "query_images"
        raise
    for i, (box, size) in enumerate(zip(box_list, sizes, strict=True)):
        if box is not None:
            check_box(box, size, i)
    features = model.encode_pixels(pixels, sizes)
    picked = [model.image_query(features.rows(i, i + 1), box) for i, box in enumerate(box_list)]
    return QuerySet("image", [f"image query {i}" for i in range(len(images))],
                    np.stack([emb for emb, _ in picked]).astype(np.float32), [index for _, index in picked])


def check_box(box: Sequence[float], size: tuple[int, int], item: int) -> None:
    """A query box must be four finite numbers with 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height."""
    h, w = size
    if len(box) != 4 or not all(isinstance(v, int | float) and math.isfinite(v) for v in box):
        raise InvalidInput(f"a query box is four finite numbers x0, y0, x1, y1, got {list(box)!r}", item=item,
                           field="query_boxes")
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise InvalidInput(f"query box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is not inside the {w}x{h} query image "
                           f"(need 0 <= x0 < x1 <= {w} and 0 <= y0 < y1 <= {h})", item=item, field="query_boxes")
