"""The ONNX runtime through the real Triton: one repository holding the toy model twice, with torch
towers (no prefix) and with onnxruntime towers (``onnx_``, built by ``--runtime onnx``), answers the
same tensors for the same requests (max |delta| <= 1e-4). The local tritonserver ships only the python
backend, so the ONNX towers run under onnxruntime inside the python-backend adapters."""

from __future__ import annotations

import numpy as np
import pytest
from servers import running_triton

from vlserve.serving.client import VLServeClient
from vlserve.serving.repository import build_repository
from vlserve.toyworld.dataset import composed_scene

pytest.importorskip("onnxruntime")
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_onnx_repository_answers_the_torch_repository_tensors(tmp_path):
    import io

    from PIL import Image

    repo = tmp_path / "repo"
    build_repository(repo, "toy", models=("image_encoder", "text_encoder", "zero_shot_classifier"))
    build_repository(repo, "toy", prefix="onnx_", models=("image_encoder", "text_encoder", "zero_shot_classifier"),
                     runtime="onnx")
    assert (repo / "onnx_image_encoder" / "1" / "onnx" / "image_encoder.onnx").is_file()
    assert 'key: "RUNTIME"' in (repo / "onnx_text_encoder" / "config.pbtxt").read_text()
    images = []
    for i, (shape, colour) in enumerate([("star", "red"), ("circle", "blue"), ("triangle", "green")]):
        buf = io.BytesIO()
        Image.fromarray(composed_scene([(shape, colour)], index=i, image_size=120).image).save(buf, format="PNG")
        images.append(buf.getvalue())
    texts = ["a red star", "a blue circle", "a hand-drawn green triangle outline"]
    with running_triton(repo, tmp_path / "cache", ready_timeout=600) as triton:
        torch_side = VLServeClient(triton.grpc_url, protocol="grpc")
        onnx_side = VLServeClient(triton.grpc_url, protocol="grpc", prefix="onnx_")
        for dims in (None, 32):
            a, b = torch_side.embed_images(images, dims), onnx_side.embed_images(images, dims)
            assert a.shape == b.shape and np.abs(a - b).max() <= 1e-4
            a, b = torch_side.embed_texts(texts, dims), onnx_side.embed_texts(texts, dims)
            assert a.shape == b.shape and np.abs(a - b).max() <= 1e-4
        labels = ["star", "circle", "triangle"]
        for image in images:
            x, y = torch_side.classify(image, labels), onnx_side.classify(image, labels)
            assert x.labels == y.labels
            assert np.abs(np.array(x.scores) - np.array(y.scores)).max() <= 1e-4
