"""Triton python-backend model: pixel-text score maps and segmentation.

Tensors: ``vlserve.api.tensors.PIXEL_TEXT``. One row per image; labels and options are per request,
repeated on every row. A model that cannot produce dense maps (an ALIGN spec) still loads and
answers every request with that error, so the rest of the repository serves.
"""

import triton_python_backend_utils as pb_utils

from vlserve.dense.service import PixelTextService, pack
from vlserve.errors import Unsupported
from vlserve.serving.python_backend import (
    as_batch,
    image_inputs,
    load_engine,
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
        self.refusal = None
        try:
            self.service = PixelTextService(load_engine(args), parameters(args))
        except Unsupported as e:
            self.refusal = e

    def parse(self, request):
        if self.refusal is not None:
            raise self.refusal
        labels = same_on_every_row(optional(pb_utils, request, "LABELS"), "LABELS")
        templates = same_on_every_row(optional(pb_utils, request, "TEMPLATES"), "TEMPLATES")
        return self.service.parse(
            images=image_inputs(pb_utils, request), labels=strings(labels), method=optional_scalar(
                pb_utils, request, "METHOD", str), templates=strings(templates),
            background_threshold=optional_scalar(pb_utils, request, "BACKGROUND_THRESHOLD", float),
            output_side=optional_scalar(pb_utils, request, "OUTPUT_SIDE", int),
            stride=optional_scalar(pb_utils, request, "STRIDE", int))

    def execute(self, requests):
        responses, parsed = parse_each(pb_utils, requests, self.parse)
        for i, job in parsed:
            try:
                arrays = pack(self.service.run(job))
            except Exception as e:
                responses[i] = pb_utils.InferenceResponse(error=triton_error(pb_utils, e))
                continue
            responses[i] = pb_utils.InferenceResponse(
                output_tensors=[as_batch(pb_utils, name, arr) for name, arr in arrays.items()])
        return responses
