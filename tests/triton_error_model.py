"""A Triton python-backend model for tests only (copied into a temporary repository as
``raise_image_encoder/1/model.py``): every request's IMAGE bytes are JSON
``{"code": ..., "message": ..., "item": ..., "field": ...}`` and the model raises that vlserve error,
answered through the same helper the product's models use. ``"code": "bug"`` raises a plain
``RuntimeError`` instead, standing for a bug inside a model."""

import json

import triton_python_backend_utils as pb_utils

from vlserve.errors import BY_CODE
from vlserve.serving.python_backend import image_inputs, triton_error


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                spec = json.loads(image_inputs(pb_utils, request)[0])
                if spec["code"] == "bug":
                    raise RuntimeError("secret internal detail /etc/passwd")
                raise BY_CODE[spec["code"]].rebuild(spec["message"], item=spec.get("item"), field=spec.get("field"))
            except Exception as e:
                responses.append(pb_utils.InferenceResponse(error=triton_error(pb_utils, e)))
        return responses
