"""Engine-side logic behind the Triton ``detector`` model (no Triton types here).

Each request of a dynamic batch is parsed on its own (options, queries, its target images decoded
and preprocessed), so a bad request fails alone; the target images of all the requests that
parsed then go through the image tower in one forward pass, and each request's queries are scored
against its own images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from vlserve.detection.engine import ObjectDetector
from vlserve.detection.postprocess import (
    DEFAULT_NMS_IOU,
    DEFAULT_THRESHOLD,
    DEFAULT_TOP_K,
    DetectOptions,
    ImageDetections,
)
from vlserve.detection.queries import QuerySet
from vlserve.models.detector import Box, Detector
from vlserve.models.images import ImageInput
from vlserve.models.text_cache import TextEmbeddingCache


@dataclass
class DetectJob:
    """One parsed request: its preprocessed target images, queries and options."""

    pixels: torch.Tensor
    sizes: list[tuple[int, int]]
    queries: QuerySet
    options: DetectOptions


class DetectionService:
    def __init__(self, model: Detector, params: dict[str, str]) -> None:
        self.detector = ObjectDetector(model, TextEmbeddingCache(params.get("TEXT_CACHE") or None))

    def parse(self, images: Sequence[ImageInput], queries: Sequence[str], query_images: Sequence[ImageInput],
              query_boxes: Sequence[Box | None] | None, threshold: float | None, nms_iou: float | None,
              top_k: int | None) -> DetectJob:
        """Validate one request (options first, then queries, then images) and prepare its work."""
        options = DetectOptions(DEFAULT_THRESHOLD if threshold is None else threshold,
                                DEFAULT_NMS_IOU if nms_iou is None else nms_iou,
                                DEFAULT_TOP_K if top_k is None else top_k)
        query_set = self.detector.queries(list(queries) or None, list(query_images) or None, query_boxes)
        pixels, sizes = self.detector.model.preprocess(images)
        return DetectJob(pixels, sizes, query_set, options)

    def run(self, jobs: list[tuple[int, DetectJob]]) -> list[tuple[int, list[ImageDetections] | BaseException]]:
        """(request index, job) -> (request index, detections per image | the error of that request)."""
        if not jobs:
            return []
        try:
            features = self.detector.model.encode_pixels(torch.cat([job.pixels for _, job in jobs]),
                                                         [s for _, job in jobs for s in job.sizes])
        except Exception as e:  # the shared forward failed: every request in it gets that error
            return [(i, e) for i, _ in jobs]
        out: list[tuple[int, list[ImageDetections] | BaseException]] = []
        start = 0
        for i, job in jobs:
            n = len(job.sizes)
            try:
                out.append((i, self.detector.detect_features(features.rows(start, start + n), job.queries,
                                                             job.options)))
            except Exception as e:
                out.append((i, e))
            start += n
        return out
