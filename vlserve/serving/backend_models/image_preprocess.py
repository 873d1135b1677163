"""Triton python-backend model, the first step of the ONNX ``image_encoder`` ensemble: images (encoded
bytes or raw uint8 HWC) -> the encoder's own preprocessed ``PIXELS``, and ``DIMS`` (the checked
Matryoshka ``DIMENSIONS``, 0 for the full embedding) for the last step. A bad image or dimension is
refused here, before any tower runs.

Tensors: ``vlserve.serving.onnx_ensemble.step_models``.
"""

import numpy as np
import triton_python_backend_utils as pb_utils

from vlserve.serving.python_backend import as_batch, load_engine, parse_each, pixels_and_dimensions


class TritonPythonModel:
    def initialize(self, args):
        self.engine = load_engine(args)

    def parse(self, request):
        pixels, dims = pixels_and_dimensions(pb_utils, request, self.engine)
        return pixels.numpy(), dims or 0

    def execute(self, requests):
        responses, parsed = parse_each(pb_utils, requests, self.parse)
        for i, (pixels, dims) in parsed:
            responses[i] = pb_utils.InferenceResponse(output_tensors=[
                as_batch(pb_utils, "PIXELS", pixels.astype(np.float32)),
                as_batch(pb_utils, "DIMS", np.full((len(pixels), 1), dims, dtype=np.int32))])
        return responses
