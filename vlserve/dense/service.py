"""Engine-side logic behind the Triton ``pixel_text`` model (no Triton types here).

Each request is checked on its own (labels, method and options before any image is decoded), so a
bad request fails alone. A request's images share one forward pass; its results are packed into
fixed-shape arrays: score maps and segmentations padded to the request's largest map, with each
image's own map size alongside.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlserve.dense.segmenter import DENSECLIP, PixelText, Segmentation
from vlserve.models.images import ImageInput
from vlserve.models.text_cache import TextEmbeddingCache

TOY_HEAD_DIR = Path(__file__).resolve().parent.parent / "assets" / "toy_denseclip"


def default_head_dir(encoder: Any) -> Path | None:
    """The head deployed with an encoder when none is named: the embedded toy head for the ``toy`` model."""
    if encoder.spec.canonical == "toy" and (TOY_HEAD_DIR / "head.json").is_file():
        return TOY_HEAD_DIR
    return None


def head_dir_from(encoder: Any, value: str | None) -> Path | None:
    """A ``DENSE_HEAD`` parameter: a folder, ``none``, or empty (the encoder's default head)."""
    if value is None or value == "":
        return default_head_dir(encoder)
    if value.lower() == "none":
        return None
    return Path(value)


@dataclass
class SegmentJob:
    images: Sequence[ImageInput]
    labels: list[str]
    method: str
    templates: list[str] | None
    background_threshold: float | None
    output_side: int | None
    stride: int | None = None


class PixelTextService:
    def __init__(self, encoder: Any, params: dict[str, str]) -> None:
        self.engine = PixelText(encoder, head_dir_from(encoder, params.get("DENSE_HEAD")),
                                TextEmbeddingCache(params.get("TEXT_CACHE") or None))

    @property
    def default_method(self) -> str:
        return DENSECLIP if self.engine.head is not None else "maskclip"

    def parse(self, images: Sequence[ImageInput], labels: list[str], method: str | None, templates: list[str],
              background_threshold: float | None, output_side: int | None, stride: int | None = None) -> SegmentJob:
        method = method or self.default_method
        self.engine.check(labels, method, background_threshold, output_side)
        return SegmentJob(images, labels, method, templates or None, background_threshold, output_side, stride)

    def run(self, job: SegmentJob) -> list[Segmentation]:
        return self.engine.segment(job.images, job.labels, job.method, job.background_threshold, job.output_side,
                                   job.templates, job.stride)


def pack(results: list[Segmentation]) -> dict[str, np.ndarray]:
    """Fixed-shape arrays for a request's results (padding: score NaN, segmentation -1)."""
    n_labels = results[0].scores.shape[0]
    h = max(r.segmentation.shape[0] for r in results)
    w = max(r.segmentation.shape[1] for r in results)
    scores = np.full((len(results), n_labels, h, w), np.nan, np.float16)
    seg = np.full((len(results), h, w), -1, np.int32)
    sizes = np.zeros((len(results), 2), np.int32)
    for i, r in enumerate(results):
        rh, rw = r.segmentation.shape
        scores[i, :, :rh, :rw] = r.scores
        seg[i, :rh, :rw] = r.segmentation
        sizes[i] = (rh, rw)
    method = np.array([[r.method.encode()] for r in results], dtype=np.object_)
    return {"SCORES": scores, "SEGMENTATION": seg, "OUTPUT_SIZE": sizes, "METHOD_USED": method}
