"""Triton python-backend model: an exported ONNX tower run by onnxruntime, for a tritonserver without
the onnxruntime backend (the same graph file, tensor names and batching as the ``onnxruntime``
tower configs of :mod:`vlserve.serving.onnx_ensemble`, so the ensembles around it are unchanged).

Requests whose inputs have the same shapes run in one session call.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from vlserve.serving.python_backend import as_batch, onnx_session, parameters, triton_error


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.inputs = [t["name"] for t in config["input"]]
        self.output = config["output"][0]["name"]
        folder = Path(args["model_repository"]) / args["model_version"]
        self.session = onnx_session(folder / parameters(args)["ONNX_FILE"], args.get("model_instance_kind") == "GPU")

    def execute(self, requests):
        responses = [None] * len(requests)
        groups: dict[tuple, list] = {}
        for i, request in enumerate(requests):
            feed = {n: pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in self.inputs}
            groups.setdefault(tuple(feed[n].shape[1:] for n in self.inputs), []).append((i, feed))
        for members in groups.values():
            try:
                feed = {n: np.concatenate([f[n] for _, f in members]) for n in self.inputs}
                out = self.session.run([self.output], feed)[0]
            except Exception as e:
                for i, _ in members:
                    responses[i] = pb_utils.InferenceResponse(error=triton_error(pb_utils, e))
                continue
            start = 0
            for i, f in members:
                n = len(f[self.inputs[0]])
                responses[i] = pb_utils.InferenceResponse(output_tensors=[as_batch(pb_utils, self.output,
                                                                                   out[start:start + n])])
                start += n
        return responses
