"""The gateway's calls to the Triton ``detector`` (through the client's own ``detect``, whose tensors
are :data:`vlserve.api.tensors.DETECTOR`) and ``pixel_text`` (pixel-text maps, not built yet:
``PIXEL_TEXT`` is this module's proposal for that model's contract).

Until a model is deployed, Triton says so and the gateway answers 404 (``model 'detector' is not
deployed``); nothing here answers in a model's place.
"""

from __future__ import annotations

import base64
import io

import numpy as np

from vlserve.api.tensors import IMAGE, ModelIO, TensorSpec
from vlserve.errors import NotFound, VLServeError
from vlserve.gateway.registry import DeployedModel
from vlserve.serving.client import Detections

PIXEL_TEXT = ModelIO(
    "pixel_text", "images -> the label of every pixel (MaskCLIP / SCLIP / ClearCLIP style pixel-text maps)",
    (IMAGE, TensorSpec("LABELS", "BYTES", (-1,), doc="the label set")),
    (TensorSpec("LABEL_MAP", "INT32", (-1, -1), doc="index of each pixel's label, at the input image's size"),))


async def require_deployed(model: DeployedModel, io: ModelIO) -> None:
    """404 unless Triton reports ``io``'s model (with the deployed model's prefix) loaded and ready."""
    try:
        ready = await model.client.model_ready(io.name)
    except NotFound:  # Triton's own answer for a model it has never heard of
        ready = False
    if not ready:
        raise NotFound(f"model {io.name!r} is not deployed")


def _row(values: list[object]) -> np.ndarray:
    arr = np.empty((1, len(values)), dtype=np.object_)
    arr[0, :] = values
    return arr


async def detect_images(model: DeployedModel, images: list[bytes], queries: list[str] | None,
                        query_images: list[bytes] | None,
                        query_boxes: list[tuple[float, float, float, float] | None] | None, threshold: float,
                        nms_iou: float, top_k: int) -> list[dict[str, object]]:
    """All of ``images`` through the Triton ``detector`` (the client's own contract,
    :mod:`vlserve.api.tensors`) in as few requests as its max batch allows: the model prepares a
    request's queries once (text embeddings, or an image-tower pass per query image) for all its images."""
    from PIL import Image

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
        width, height = Image.open(io.BytesIO(image)).size
        boxes = []
        for j in range(len(f.scores)):
            rel = float(f.relative_scores[j])
            boxes.append({"box_xyxy": [float(v) for v in f.boxes[j]], "query": int(f.queries[j]),
                          "label": f.labels[j], "score": float(f.scores[j]),
                          **({} if rel != rel else {"relative_score": rel})})
        out.append({"height": height, "width": width, "boxes": boxes})
    return out


async def segment_one(model: DeployedModel, image: bytes, labels: list[str]) -> dict[str, object]:
    from PIL import Image

    out = await model.client.call(PIXEL_TEXT, {"IMAGE": _row([image]), "LABELS": _row(list(labels))})
    label_map = out["LABEL_MAP"][0]
    buf = io.BytesIO()
    mode = "L" if len(labels) <= 256 else "I;16"
    Image.fromarray(label_map.astype(np.uint8 if mode == "L" else np.uint16), mode).save(buf, format="PNG")
    return {"height": int(label_map.shape[0]), "width": int(label_map.shape[1]), "labels": list(labels),
            "mask_png": base64.b64encode(buf.getvalue()).decode()}
