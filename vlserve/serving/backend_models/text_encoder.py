"""Triton python-backend model: texts -> L2-normalised embeddings.

Tensors: ``vlserve.api.tensors.TEXT_ENCODER``.
Over-long texts are truncated to the model's context, as the reference tokenizer does. Every row
also carries ``MODEL_INFO`` (spec, fingerprint, family, dims): how a client without torch (the HTTP
gateway) learns which model it is talking to, e.g. to check an index manifest against it.
"""

import triton_python_backend_utils as pb_utils

from vlserve.errors import InvalidInput
from vlserve.matryoshka import check_dimensions
from vlserve.serving.python_backend import (
    embedding_responses,
    load_engine,
    model_info,
    optional,
    optional_scalar,
    parse_each,
)


class TritonPythonModel:
    def initialize(self, args):
        self.engine = load_engine(args)
        self.info = model_info(self.engine)

    def parse(self, request):
        """One request -> (its texts, Matryoshka dimensions)."""
        arr = optional(pb_utils, request, "TEXT")
        if arr is None:
            raise InvalidInput("missing TEXT input", field="TEXT")
        try:
            texts = [bytes(v).decode("utf-8") for v in arr.reshape(len(arr), -1)[:, 0]]
        except UnicodeDecodeError:
            raise InvalidInput("TEXT must be UTF-8", field="TEXT") from None
        dims = optional_scalar(pb_utils, request, "DIMENSIONS", int)
        check_dimensions(dims, self.engine.embed_dim)
        return texts, dims

    def execute(self, requests):
        responses, parsed = parse_each(pb_utils, requests, self.parse)
        owners = [(i, len(texts), dims) for i, (texts, dims) in parsed]
        return embedding_responses(pb_utils, lambda: self.engine.encode_texts([t for _, (ts, _) in parsed for t in ts]),
                                   owners, responses, self.info)
