"""Triton python-backend model: images (encoded bytes or raw uint8 HWC) -> L2-normalised embeddings.

Tensors: ``vlserve.api.tensors.IMAGE_ENCODER``.
Images of all requests in a dynamic batch are decoded one by one (a bad one fails only its own
request) and encoded in one forward pass.
"""

import torch
import triton_python_backend_utils as pb_utils

from vlserve.matryoshka import check_dimensions
from vlserve.serving.python_backend import embedding_responses, image_inputs, load_engine, optional_scalar, triton_error


class TritonPythonModel:
    def initialize(self, args):
        self.engine = load_engine(args)

    def execute(self, requests):
        responses = [None] * len(requests)
        pixels, owners = [], []  # owners: (request index, number of images, dimensions)
        for i, request in enumerate(requests):
            try:
                images = image_inputs(pb_utils, request)
                dims = optional_scalar(pb_utils, request, "DIMENSIONS", int)
                check_dimensions(dims, self.engine.embed_dim)
                batch = self.engine.preprocess(images)
                pixels.append(batch)
                owners.append((i, len(images), dims))
            except Exception as e:  # one request's failure is its own response
                responses[i] = pb_utils.InferenceResponse(error=triton_error(pb_utils, e))
        return embedding_responses(pb_utils, lambda: self.engine.encode_pixels(torch.cat(pixels)), owners, responses)

