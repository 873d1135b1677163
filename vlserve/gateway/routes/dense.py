"""``POST /v1/detect`` and ``POST /v1/segment``: routed by name to the Triton models ``detector`` and
``pixel_text`` (see :mod:`vlserve.gateway.pending`); 404 while Triton does not serve them."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from vlserve.api.schemas import DetectRequest, DetectResponse, SegmentRequest, SegmentResponse
from vlserve.api.tensors import DETECTOR, PIXEL_TEXT
from vlserve.gateway.body import body_doc
from vlserve.gateway.pending import detect_images, require_deployed, segment_one
from vlserve.gateway.routes.common import ERRORS, each_image, json_response
from vlserve.gateway.state import model_request, one_of

router = APIRouter()


@router.post("/v1/detect", response_model=DetectResponse, responses=ERRORS, tags=["dense"],
             summary="Boxes for text queries or example images (the Triton model 'detector')",
             openapi_extra=body_doc(DetectRequest))
async def detect(request: Request) -> Response:
    gw, req, model = await model_request(request, DetectRequest)
    one_of(req, ("queries", "query_images"))
    gw.limits.images(len(req.images) + len(req.query_images or []), "images")
    if req.queries is not None:
        gw.limits.texts(req.queries, "queries")
    await require_deployed(model, DETECTOR)
    images = await gw.images.resolve(req.images, "images")
    examples = await gw.images.resolve(req.query_images, "query_images") if req.query_images else None
    boxes = list(req.query_boxes) if req.query_boxes else None
    results = await detect_images(model, images, req.queries, examples, boxes, req.threshold, req.nms_iou,
                                  req.top_k)
    return json_response({"model": model.id, "results": results})


@router.post("/v1/segment", response_model=SegmentResponse, responses=ERRORS, tags=["dense"],
             summary="The label of every pixel: pixel-text maps (the Triton model 'pixel_text')",
             openapi_extra=body_doc(SegmentRequest))
async def segment(request: Request) -> Response:
    gw, req, model = await model_request(request, SegmentRequest)
    gw.limits.images(len(req.images), "images")
    gw.limits.labels(req.labels)
    await require_deployed(model, PIXEL_TEXT)
    images = await gw.images.resolve(req.images, "images")
    results = await each_image(images, lambda image: segment_one(model, image, req.labels, req.method,
                                                                 req.background_threshold, req.output_side,
                                                                 req.stride, req.heatmaps))
    return json_response({"model": model.id, "results": results})
