"""Triton python-backend model: zero-shot classification, returning the image embedding too.

Tensors: ``vlserve.api.tensors.ZERO_SHOT_CLASSIFIER``.

The image is encoded once, by this model's engine, and its embedding is returned beside the
scores: a client that needs both makes one request. Label embeddings come from the text cache.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from vlserve.serving.python_backend import (
    as_batch,
    bytes_array,
    image_inputs,
    load_engine,
    optional,
    optional_scalar,
    parameters,
    parse_each,
    strings,
    triton_error,
)
from vlserve.zeroshot.service import ClassifierService


class TritonPythonModel:
    def initialize(self, args):
        self.service = ClassifierService(load_engine(args), parameters(args))

    def parse(self, request):
        """One request -> (images, head, options)."""
        head = self.service.head_for(
            labels=strings(optional(pb_utils, request, "LABELS")),
            templates=strings(optional(pb_utils, request, "TEMPLATES")),
            descriptors=optional_scalar(pb_utils, request, "DESCRIPTORS", str),
            name=optional_scalar(pb_utils, request, "HEAD", str))
        options = dict(top_k=optional_scalar(pb_utils, request, "TOP_K", int) or 5,
                       multi_label=optional_scalar(pb_utils, request, "MULTI_LABEL", bool),
                       abstain_threshold=optional_scalar(pb_utils, request, "ABSTAIN_THRESHOLD", float),
                       dimensions=optional_scalar(pb_utils, request, "DIMENSIONS", int))
        return image_inputs(pb_utils, request), head, options

    def execute(self, requests):
        responses, parsed = parse_each(pb_utils, requests, self.parse)
        batch = [(i, images, head, options) for i, (images, head, options) in parsed]
        for i, result in self.service.classify_batch(batch):
            if isinstance(result, BaseException):
                responses[i] = pb_utils.InferenceResponse(error=triton_error(pb_utils, result))
                continue
            preds, emb = result
            k = max(len(p.labels) for p in preds)
            labels = np.array([[x["label"].encode() for x in p.labels] + [b""] * (k - len(p.labels)) for p in preds],
                              dtype=np.object_)
            scores = np.array([[x["score"] for x in p.labels] + [np.nan] * (k - len(p.labels)) for p in preds],
                              dtype=np.float32)
            explanation = [json.dumps({x["label"]: x.get("explanation", []) for x in p.labels}) for p in preds]
            responses[i] = pb_utils.InferenceResponse(output_tensors=[
                as_batch(pb_utils, "LABEL", labels), as_batch(pb_utils, "SCORE", scores),
                as_batch(pb_utils, "EMBEDDING", emb),
                as_batch(pb_utils, "RULE", bytes_array([p.rule for p in preds]).reshape(-1, 1)),
                as_batch(pb_utils, "EXPLANATION", bytes_array(explanation).reshape(-1, 1)),
                as_batch(pb_utils, "ABSTAINED", np.array([[p.abstained] for p in preds], dtype=bool)),
            ])
        return responses
