"""Triton python-backend model: images (encoded bytes or raw uint8 HWC) -> L2-normalised embeddings.

Tensors: ``vlserve.api.tensors.IMAGE_ENCODER``.
Images of all requests in a dynamic batch are decoded one by one (a bad one fails only its own
request) and encoded in one forward pass.
"""

import torch
import triton_python_backend_utils as pb_utils

from vlserve.serving.python_backend import embedding_responses, load_engine, parse_each, pixels_and_dimensions


class TritonPythonModel:
    def initialize(self, args):
        self.engine = load_engine(args)

    def parse(self, request):
        """One request -> (preprocessed pixels, Matryoshka dimensions)."""
        return pixels_and_dimensions(pb_utils, request, self.engine)

    def execute(self, requests):
        responses, parsed = parse_each(pb_utils, requests, self.parse)
        owners = [(i, len(pixels), dims) for i, (pixels, dims) in parsed]
        return embedding_responses(pb_utils, lambda: self.engine.encode_pixels(torch.cat([p for _, (p, _) in parsed])),
                                   owners, responses)
