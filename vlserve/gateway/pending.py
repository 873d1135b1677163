"""The gateway's calls to the Triton ``detector`` and ``pixel_text`` models, through the client's own
``detect`` and ``segment`` (tensors: :data:`vlserve.api.tensors.DETECTOR` and ``PIXEL_TEXT``).

Until a model is deployed, Triton says so and the gateway answers 404 (``model 'detector' is not
deployed``); nothing here answers in a model's place.
"""

from __future__ import annotations

import base64
import io

import numpy as np

from vlserve.api.tensors import ModelIO
from vlserve.errors import NotFound, VLServeError
from vlserve.gateway.registry import DeployedModel
from vlserve.serving.client import Detections


async def require_deployed(model: DeployedModel, io: ModelIO) -> None:
    """404 unless Triton reports ``io``'s model (with the deployed model's prefix) loaded and ready."""
    try:
        ready = await model.client.model_ready(io.name)
    except NotFound:  # Triton's own answer for a model it has never heard of
        ready = False
    if not ready:
        raise NotFound(f"model {io.name!r} is not deployed")


async def detect_images(model: DeployedModel, images: list[bytes], queries: list[str] | None,
                        query_images: list[bytes] | None,
                        query_boxes: list[tuple[float, float, float, float] | None] | None, threshold: float,
                        nms_iou: float, top_k: int) -> list[dict[str, object]]:
    """All of ``images`` through the Triton ``detector`` (the client's own contract,
    :mod:`vlserve.api.tensors`) in as few requests as its max batch allows: the model prepares a
    request's queries once (text embeddings, or an image-tower pass per query image) for all its images."""
    from PIL import Image, ImageOps

    async def call(chunk: list[bytes]) -> list[Detections]:
        return await model.client.detect(chunk, queries, query_images=query_images, query_boxes=query_boxes,
                                         threshold=threshold, nms_iou=nms_iou, top_k=top_k)

    try:
        found: list[Detections] = await model.batched("detector", call, images,
                                                      join=lambda parts: [d for p in parts for d in p])
    except VLServeError as e:
        if e.field in ("image", "IMAGE"):  # a target image, numbered by its place in the request's images
            e.field = "images"
        raise
    out = []
    for image, f in zip(images, found, strict=True):
        width, height = ImageOps.exif_transpose(Image.open(io.BytesIO(image))).size  # as the model saw it
        boxes = []
        for j in range(len(f.scores)):
            rel = float(f.relative_scores[j])
            boxes.append({"box_xyxy": [float(v) for v in f.boxes[j]], "query": int(f.queries[j]),
                          "label": f.labels[j], "score": float(f.scores[j]),
                          **({} if rel != rel else {"relative_score": rel})})
        out.append({"height": height, "width": width, "boxes": boxes})
    return out


async def segment_one(model: DeployedModel, image: bytes, labels: list[str], method: str | None,
                      background_threshold: float | None, output_side: int | None,
                      stride: int | None = None, heatmaps: bool = False) -> dict[str, object]:
    """One image through the Triton ``pixel_text``: its mask as a PNG (0 background, ``i + 1`` for
    label ``i``) at the maps' size, and each label's share of the pixels; with ``heatmaps``, each label's
    score map as an 8-bit PNG on one shared scale."""
    from PIL import Image, ImageOps

    (result,) = await model.client.segment([image], labels, method=method, background_threshold=background_threshold,
                                           output_side=output_side, stride=stride)
    seg = result.segmentation
    buf = io.BytesIO()
    Image.fromarray((seg + 1).astype(np.uint16 if len(labels) >= 255 else np.uint8)).save(buf, format="PNG")
    width, height = ImageOps.exif_transpose(Image.open(io.BytesIO(image))).size  # as the model saw it
    return {"height": int(seg.shape[0]), "width": int(seg.shape[1]), "image_height": height, "image_width": width,
            "labels": list(labels), "method": result.method,
            "pixel_share": {label: round(float(np.mean(seg == i)), 6) for i, label in enumerate(labels)},
            "mask_png": base64.b64encode(buf.getvalue()).decode(), **(score_pngs(result.scores) if heatmaps else {})}


def score_pngs(scores: np.ndarray) -> dict[str, object]:
    """Score maps [L, h, w] as 8-bit PNGs on one linear scale shared by every label (so maps compare)."""
    from PIL import Image

    lo, hi = float(np.nanmin(scores)), float(np.nanmax(scores))
    scaled = np.clip((np.nan_to_num(scores, nan=lo) - lo) / (hi - lo if hi > lo else 1.0) * 255 + 0.5, 0, 255)
    pngs = []
    for plane in scaled.astype(np.uint8):
        buf = io.BytesIO()
        Image.fromarray(plane).save(buf, format="PNG")
        pngs.append(base64.b64encode(buf.getvalue()).decode())
    return {"heatmaps_png": pngs, "score_range": [round(lo, 6), round(hi, 6)]}
