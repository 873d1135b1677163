"""Open-vocabulary detection: boxes in images for text queries or example images.

The image tower runs once per target image, whatever the number of queries; text query embeddings
are cached by (model fingerprint, query), so a repeated query set costs only the image tower and
the class and box heads. Results follow transformers' post-processing (see
:mod:`vlserve.detection.postprocess`), with per-query NMS and top-k on top.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from vlserve.detection.postprocess import (
    DEFAULT_NMS_IOU,
    DEFAULT_THRESHOLD,
    DEFAULT_TOP_K,
    DetectOptions,
    ImageDetections,
    select,
)
from vlserve.detection.queries import QuerySet, image_queries, text_queries
from vlserve.errors import InvalidInput
from vlserve.models.detector import Box, Detector, ImageFeatures
from vlserve.models.images import ImageInput
from vlserve.models.text_cache import TextEmbeddingCache


class ObjectDetector:
    """A :class:`~vlserve.models.detector.Detector` with a query cache and the post-processing."""

    def __init__(self, model: Detector, cache: TextEmbeddingCache | None = None) -> None:
        self.model = model
        self.cache = cache if cache is not None else TextEmbeddingCache()

    def queries(self, texts: Sequence[str] | None = None, images: Sequence[ImageInput] | None = None,
                boxes: Sequence[Box | None] | None = None) -> QuerySet:
        """Text queries or example images (with optional boxes): exactly one kind."""
        if texts is not None and images is not None:
            raise InvalidInput("give text queries or query images, not both", field="queries")
        if images is not None:
            return image_queries(self.model, images, boxes)
        if boxes is not None:
            raise InvalidInput("query boxes apply to query images; none given", field="query_boxes")
        if texts is None:
            raise InvalidInput("no queries: give text queries or query images", field="queries")
        return text_queries(self.model, texts, self.cache)

    def detect(self, images: Sequence[ImageInput], queries: Sequence[str] | QuerySet | None = None, *,
               query_images: Sequence[ImageInput] | None = None, query_boxes: Sequence[Box | None] | None = None,
               threshold: float = DEFAULT_THRESHOLD, nms_iou: float = DEFAULT_NMS_IOU, top_k: int = DEFAULT_TOP_K
               ) -> list[ImageDetections]:
        """Boxes in each of ``images`` for text ``queries`` (or a prepared :class:`QuerySet`) or for
        example ``query_images`` (each with an optional box), one result per image, best first."""
        options = DetectOptions(threshold, nms_iou, top_k)
        query_set = queries if isinstance(queries, QuerySet) else self.queries(queries, query_images, query_boxes)
        return self.detect_features(self.model.encode_images(_as_list(images)), query_set, options)

    def detect_features(self, features: ImageFeatures, queries: QuerySet, options: DetectOptions
                        ) -> list[ImageDetections]:
        """Score already-encoded images against ``queries`` (the class and box heads only)."""
        logits = self.model.class_logits(features, queries.embeddings)
        out = []
        for i, size in enumerate(features.sizes):
            boxes = self.model.to_pixels(features.boxes[i].cpu(), size)
            found = select(logits[i], boxes, queries.labels, options, relative=queries.kind == "image")
            out.append(ImageDetections(size[0], size[1], found))
        return out


def _as_list(images: Any) -> list[Any]:
    if isinstance(images, bytes | bytearray | memoryview | Image.Image):
        return [images]
    if hasattr(images, "ndim") and images.ndim == 3:  # one HxWxC array
        return [images]
    return list(images)
