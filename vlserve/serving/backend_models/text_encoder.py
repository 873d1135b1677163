"""Triton python-backend model: texts -> L2-normalised embeddings.

Tensors: ``vlserve.api.tensors.TEXT_ENCODER``.
Over-long texts are truncated to the model's context, as the reference tokenizer does. Every row
also carries ``MODEL_INFO`` (spec, fingerprint, family, dims): how a client without torch (the HTTP
gateway) learns which model it is talking to, e.g. to check an index manifest against it.
"""

import triton_python_backend_utils as pb_utils

from vlserve.serving.python_backend import (
    embedding_responses,
    load_engine,
    model_info,
    parse_each,
    texts_and_dimensions,
)


class TritonPythonModel:
    def initialize(self, args):
        self.engine = load_engine(args)
        self.info = model_info(self.engine)

    def parse(self, request):
        """One request -> (its texts, Matryoshka dimensions)."""
        return texts_and_dimensions(pb_utils, request, self.engine.embed_dim)

    def execute(self, requests):
        responses, parsed = parse_each(pb_utils, requests, self.parse)
        owners = [(i, len(texts), dims) for i, (texts, dims) in parsed]
        return embedding_responses(pb_utils, lambda: self.engine.encode_texts([t for _, (ts, _) in parsed for t in ts]),
                                   owners, responses, self.info)
