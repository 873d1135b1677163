"""Triton python-backend model, the first step of the ONNX ``text_encoder`` ensemble: texts -> the
encoder's own token tensors (over-long texts truncated to the context, as the reference tokenizer
does), ``DIMS`` (the checked Matryoshka ``DIMENSIONS``, 0 for the full embedding) and ``MODEL_INFO``.

Tensors: ``vlserve.serving.onnx_ensemble.step_models``.
"""

import numpy as np
import triton_python_backend_utils as pb_utils

from vlserve.serving.python_backend import as_batch, load_engine, model_info, parse_each, texts_and_dimensions


class TritonPythonModel:
    def initialize(self, args):
        self.engine = load_engine(args)
        self.info = model_info(self.engine)

    def parse(self, request):
        texts, dims = texts_and_dimensions(pb_utils, request, self.engine.embed_dim)
        return self.engine.tokenize(texts), dims or 0

    def execute(self, requests):
        responses, parsed = parse_each(pb_utils, requests, self.parse)
        for i, (tokens, dims) in parsed:
            n = len(next(iter(tokens.values())))
            outputs = [as_batch(pb_utils, name, t.numpy().astype(np.int64)) for name, t in tokens.items()]
            outputs += [as_batch(pb_utils, "DIMS", np.full((n, 1), dims, dtype=np.int32)),
                        as_batch(pb_utils, "MODEL_INFO", np.full((n, 1), self.info, dtype=np.object_))]
            responses[i] = pb_utils.InferenceResponse(output_tensors=outputs)
        return responses
