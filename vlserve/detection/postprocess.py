"""From class logits and predicted boxes to detections.

Per image, following transformers' ``post_process_grounded_object_detection``: each patch predicts
one box; its score is ``sigmoid(max over queries of the class logit)`` and its query the argmax;
boxes (cx, cy, w, h) become corners scaled to the original image's pixels (OWL-ViT by width and
height, since its processor stretches the image to a square; OWLv2 by the longer side, since its
processor pads the bottom and right to a square); boxes are not clipped to the image, as there.
A box is kept when ``score > threshold``. Then, beyond transformers' text post-processing:

* **NMS per query** (``torchvision.ops.batched_nms``): a box is dropped when its IoU with a
  higher-scoring kept box *of the same query* exceeds ``nms_iou``; ``nms_iou = 1`` turns it off.
  With one query this is the greedy NMS of ``post_process_image_guided_detection``.
* **top-k**: the ``top_k`` best boxes of the image, best first.

Image queries also carry ``relative_score``, the number transformers'
``post_process_image_guided_detection`` returns as its "scores": per query,
``clip((score - 0.1 m) / (0.9 m), 0, 1)`` with ``m`` the best kept score of that query plus 1e-6
(the best box gets 1, boxes under a tenth of the best get 0; that function returns only the boxes
above 0). ``score`` stays the calibrated sigmoid score.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import torch

from vlserve.errors import InvalidInput
from vlserve.models.detector import Box

DEFAULT_THRESHOLD = 0.1  # transformers' default for text queries
DEFAULT_NMS_IOU = 0.3  # transformers' default for image queries (and the OWL-ViT demos')
DEFAULT_TOP_K = 100
MAX_TOP_K = 1000


@dataclass(frozen=True)
class DetectOptions:
    """How boxes are selected. ``threshold`` and ``nms_iou`` in [0, 1], ``top_k`` in 1..1000."""

    threshold: float = DEFAULT_THRESHOLD
    nms_iou: float = DEFAULT_NMS_IOU
    top_k: int = DEFAULT_TOP_K

    def __post_init__(self) -> None:
        for name in ("threshold", "nms_iou"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(float(value)) \
                    or not 0.0 <= float(value) <= 1.0:
                raise InvalidInput(f"{name} must be a number in [0, 1], got {value!r}", field=name)
            object.__setattr__(self, name, float(value))
        top_k = self.top_k
        if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or not 1 <= top_k <= MAX_TOP_K:
            raise InvalidInput(f"top_k must be an integer in 1..{MAX_TOP_K}, got {top_k!r}", field="top_k")
        object.__setattr__(self, "top_k", int(top_k))


@dataclass(frozen=True)
class Detection:
    """One box: (x0, y0, x1, y1) in pixels of the original image, its score, and its query."""

    box: Box
    score: float
    query: int  # index of the matching query in the request
    label: str  # the query text, or "image query N"
    relative_score: float | None = None  # image queries only (module docstring)

    def to_dict(self, digits: int | None = None) -> dict[str, Any]:
        def r(x: float) -> float:
            return x if digits is None else round(x, digits)

        out: dict[str, Any] = {"box": [r(v) for v in self.box], "score": r(self.score), "query": self.query,
                               "label": self.label}
        if self.relative_score is not None:
            out["relative_score"] = r(self.relative_score)
        return out


@dataclass(frozen=True)
class ImageDetections:
    """The detections of one image, best first, and the size (of the decoded image) they refer to."""

    height: int
    width: int
    detections: list[Detection]

    def to_dict(self, digits: int | None = None) -> dict[str, Any]:
        return {"height": self.height, "width": self.width,
                "detections": [d.to_dict(digits) for d in self.detections]}


def select(logits: torch.Tensor, boxes: torch.Tensor, labels: list[str], options: DetectOptions,
           relative: bool = False) -> list[Detection]:
    """Detections of one image from its class logits [P, Q] and pixel boxes (x0, y0, x1, y1) [P, 4]."""
    from torchvision.ops import batched_nms

    best = torch.max(logits.float(), dim=-1)
    scores = torch.sigmoid(best.values)
    queries = best.indices
    keep = torch.nonzero(scores > options.threshold)[:, 0]
    if options.nms_iou < 1.0 and keep.numel():
        keep = keep[batched_nms(boxes[keep].float(), scores[keep], queries[keep], options.nms_iou)]
    else:
        keep = keep[torch.argsort(scores[keep], descending=True, stable=True)]
    rel: torch.Tensor | None = None
    if relative:
        rel = torch.zeros_like(scores)
        for q in queries[keep].unique():
            mine = keep[queries[keep] == q]
            top = scores[mine].max() + 1e-6
            rel[mine] = torch.clip((scores[mine] - top * 0.1) / (top * 0.9), 0.0, 1.0)
    keep = keep[:options.top_k]
    return [Detection(tuple(float(v) for v in boxes[i].tolist()),  # type: ignore[arg-type]
                      float(scores[i]), int(queries[i]), labels[int(queries[i])],
                      None if rel is None else float(rel[i])) for i in keep.tolist()]
