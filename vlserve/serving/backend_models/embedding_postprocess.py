"""Triton python-backend model, the last step of the ONNX encoder ensembles: the tower's embeddings
cut to each row's Matryoshka ``DIMS`` (0: the full embedding) and L2-normalised again, as the torch
runtime's encoders answer.

Tensors: ``vlserve.serving.onnx_ensemble.step_models``.
"""

import numpy as np
import triton_python_backend_utils as pb_utils

from vlserve.matryoshka import truncate
from vlserve.serving.python_backend import as_batch, parse_each


class TritonPythonModel:
    def initialize(self, args):
        pass

    def parse(self, request):
        emb = pb_utils.get_input_tensor_by_name(request, "EMBEDDINGS").as_numpy()
        dims = pb_utils.get_input_tensor_by_name(request, "DIMS").as_numpy().reshape(-1)
        return truncate(emb, int(dims[0]) or None)

    def execute(self, requests):
        responses, parsed = parse_each(pb_utils, requests, self.parse)
        for i, emb in parsed:
            responses[i] = pb_utils.InferenceResponse(output_tensors=[as_batch(pb_utils, "EMBEDDING",
                                                                              emb.astype(np.float32))])
        return responses
