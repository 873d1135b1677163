"""Triton python-backend model: open-vocabulary detection (OWL-ViT, OWLv2).

Tensors: ``vlserve.api.tensors.DETECTOR``. One row per target image; the queries (texts, or
example images with optional boxes) and options are per request, repeated on every row.
Target images of all requests in a dynamic batch go through the image tower in one forward pass;
a bad request (a corrupt image, an empty query, a threshold out of range...) fails alone.
"""

import numpy as np
import triton_python_backend_utils as pb_utils

from vlserve.detection.service import DetectionService
from vlserve.serving.python_backend import (
    as_batch,
    image_inputs,
    load_detector_engine,
    optional,
    optional_scalar,
    parameters,
    parse_each,
    same_on_every_row,
    strings,
    triton_error,
)


class TritonPythonModel:
    def initialize(self, args):
        self.service = DetectionService(load_detector_engine(args), parameters(args))

    def parse(self, request):
        """One request -> a detection job (options, queries and target images checked)."""
        queries = same_on_every_row(optional(pb_utils, request, "QUERIES"), "QUERIES")
        query_images = same_on_every_row(optional(pb_utils, request, "QUERY_IMAGES"), "QUERY_IMAGES")
        boxes = same_on_every_row(optional(pb_utils, request, "QUERY_BOXES"), "QUERY_BOXES")
        return self.service.parse(
            images=image_inputs(pb_utils, request),
            queries=strings(queries),
            query_images=[] if query_images is None else [bytes(v) for v in query_images.reshape(-1)],
            query_boxes=None if boxes is None else [None if np.isnan(b).all() else (b[0], b[1], b[2], b[3])
                                                    for b in boxes.reshape(-1, 4).astype(float).tolist()],
            threshold=optional_scalar(pb_utils, request, "THRESHOLD", float),
            nms_iou=optional_scalar(pb_utils, request, "NMS_IOU", float),
            top_k=optional_scalar(pb_utils, request, "TOP_K", int))

    def execute(self, requests):
        responses, parsed = parse_each(pb_utils, requests, self.parse)
        for i, result in self.service.run(parsed):
            if isinstance(result, BaseException):
                responses[i] = pb_utils.InferenceResponse(error=triton_error(pb_utils, result))
                continue
            k = max(1, *(len(r.detections) for r in result))  # rows padded to the longest (NaN, -1)
            boxes = np.full((len(result), k, 4), np.nan, np.float32)
            scores = np.full((len(result), k), np.nan, np.float32)
            relative = np.full((len(result), k), np.nan, np.float32)
            query = np.full((len(result), k), -1, np.int32)
            for row, found in enumerate(result):
                for j, d in enumerate(found.detections):
                    boxes[row, j], scores[row, j], query[row, j] = d.box, d.score, d.query
                    relative[row, j] = np.nan if d.relative_score is None else d.relative_score
            count = np.array([[len(r.detections)] for r in result], np.int32)
            responses[i] = pb_utils.InferenceResponse(output_tensors=[
                as_batch(pb_utils, "BOXES", boxes), as_batch(pb_utils, "SCORES", scores),
                as_batch(pb_utils, "QUERY", query), as_batch(pb_utils, "RELATIVE_SCORES", relative),
                as_batch(pb_utils, "COUNT", count)])
        return responses
