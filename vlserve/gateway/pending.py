"""Triton models the gateway routes to whose tensors are not in :mod:`vlserve.api.tensors` yet: the
``detector`` (OWL-ViT / OWLv2 boxes, being added on the ``detection`` branch) and ``pixel_text``
(pixel-text maps, not built yet).

Everything here is isolated so it can be rewired when those models land: at the merge, take
``DETECTOR`` from :mod:`vlserve.api.tensors` (the tensors below follow that branch's contract) or call
the client's own ``detect``; ``PIXEL_TEXT`` is this module's proposal for that model's contract.
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

DETECTOR = ModelIO(
    "detector", "images -> boxes for text queries or example images (give QUERIES or QUERY_IMAGES)",
    (IMAGE,
     TensorSpec("QUERIES", "BYTES", (-1,), optional=True, doc="text queries (the same on every row of a request)"),
     TensorSpec("QUERY_IMAGES", "BYTES", (-1,), optional=True, doc="encoded example images"),
     TensorSpec("THRESHOLD", "FP32", (1,), optional=True, doc="keep boxes scoring above this"),
     TensorSpec("TOP_K", "INT32", (1,), optional=True, doc="boxes returned per image")),
    (TensorSpec("BOXES", "FP32", (-1, 4), doc="x0, y0, x1, y1 in the image's pixels, best first"),
     TensorSpec("SCORES", "FP32", (-1,), doc="scores"),
     TensorSpec("QUERY", "INT32", (-1,), doc="index of each box's query"),
     TensorSpec("COUNT", "INT32", (1,), doc="number of boxes found in this image")))

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
                     threshold: float, top_k: int) -> list[dict[str, object]]:
    inputs = {"IMAGE": _row([image]), "THRESHOLD": np.array([[threshold]], np.float32),
              "TOP_K": np.array([[top_k]], np.int32)}
    if queries:
        inputs["QUERIES"] = _row(list(queries))
    if query_images:
        inputs["QUERY_IMAGES"] = _row(list(query_images))
    out = await model.client.call(DETECTOR, inputs)
    count = int(out["COUNT"][0, 0])
    names = list(queries or []) or [f"image query {i}" for i in range(len(query_images or []))]
    return [{"box_xyxy": [float(v) for v in out["BOXES"][0, j]], "query": int(out["QUERY"][0, j]),
             "label": names[int(out["QUERY"][0, j])], "score": float(out["SCORES"][0, j])} for j in range(count)]


async def segment_one(model: DeployedModel, image: bytes, labels: list[str]) -> dict[str, object]:
    from PIL import Image

    out = await model.client.call(PIXEL_TEXT, {"IMAGE": _row([image]), "LABELS": _row(list(labels))})
    label_map = out["LABEL_MAP"][0]
    buf = io.BytesIO()
    mode = "L" if len(labels) <= 256 else "I;16"
    Image.fromarray(label_map.astype(np.uint8 if mode == "L" else np.uint16), mode).save(buf, format="PNG")
    return {"height": int(label_map.shape[0]), "width": int(label_map.shape[1]), "labels": list(labels),
            "mask_png": base64.b64encode(buf.getvalue()).decode()}
