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
from vlserve.errors import NotFound
from vlserve.gateway.registry import DeployedModel

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


async def detect_one(model: DeployedModel, image: bytes, queries: list[str] | None, query_images: list[bytes] | None,
                     query_boxes: list[tuple[float, float, float, float] | None] | None, threshold: float,
                     nms_iou: float, top_k: int) -> dict[str, object]:
    """One image through the Triton ``detector`` (the client's own contract, :mod:`vlserve.api.tensors`)."""
    from PIL import Image

    found = (await model.client.detect([image], queries, query_images=query_images, query_boxes=query_boxes,
                                       threshold=threshold, nms_iou=nms_iou, top_k=top_k))[0]
    width, height = Image.open(io.BytesIO(image)).size
    boxes = []
    for j in range(len(found.scores)):
        rel = float(found.relative_scores[j])
        boxes.append({"box_xyxy": [float(v) for v in found.boxes[j]], "query": int(found.queries[j]),
                      "label": found.labels[j], "score": float(found.scores[j]),
                      **({} if rel != rel else {"relative_score": rel})})
    return {"height": height, "width": width, "boxes": boxes}


async def segment_one(model: DeployedModel, image: bytes, labels: list[str]) -> dict[str, object]:
    from PIL import Image

    out = await model.client.call(PIXEL_TEXT, {"IMAGE": _row([image]), "LABELS": _row(list(labels))})
    label_map = out["LABEL_MAP"][0]
    buf = io.BytesIO()
    mode = "L" if len(labels) <= 256 else "I;16"
    Image.fromarray(label_map.astype(np.uint8 if mode == "L" else np.uint16), mode).save(buf, format="PNG")
    return {"height": int(label_map.shape[0]), "width": int(label_map.shape[1]), "labels": list(labels),
            "mask_png": base64.b64encode(buf.getvalue()).decode()}
