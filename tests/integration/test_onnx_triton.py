"""The ONNX runtime through the real Triton: one repository holding the toy model twice, with torch
towers (no prefix) and as ``--runtime onnx`` ensembles (``onnx_``: python preprocessing and
tokenising steps, ONNX towers, a Matryoshka postprocess step), answers the same tensors for the same
requests (max |delta| <= 1e-4), and refuses bad input through the ensemble as the torch models do.
The local tritonserver ships only the python backend, so the towers are built with
``--tower-backend python``: the same graph files under onnxruntime inside the python backend; the
ensembles and every other step are what the onnxruntime-backend build serves."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc
from servers import running_triton

from vlserve.errors import InvalidInput
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
                     runtime="onnx", tower_backend="python")
    assert (repo / "onnx_image_tower" / "1" / "image_encoder.onnx").is_file()
    assert (repo / "onnx_text_tower" / "1" / "text_encoder.onnx").is_file()
    assert 'platform: "ensemble"' in (repo / "onnx_text_encoder" / "config.pbtxt").read_text()
    assert 'key: "RUNTIME"' in (repo / "onnx_zero_shot_classifier" / "config.pbtxt").read_text()
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
        # bad input is refused by the step that reads it, with the torch models' code and message
        for call in (lambda c: c.embed_images([b"not an image"]), lambda c: c.embed_texts(["a star"], 1000),
                     lambda c: c.embed_images(images[:1], 0)):
            with pytest.raises(InvalidInput) as want:
                call(torch_side)
            with pytest.raises(InvalidInput) as got:
                call(onnx_side)
            assert str(got.value) == str(want.value)
        stock = tritonclient.grpc.InferenceServerClient(triton.grpc_url)
        text = tritonclient.grpc.InferInput("TEXT", [1, 1], "BYTES")
        text.set_data_from_numpy(np.array([[b"a red star"]], dtype=np.object_))
        out, ref = stock.infer("onnx_text_encoder", [text]), stock.infer("text_encoder", [text])
        assert out.as_numpy("EMBEDDING").shape == (1, 128)
        assert out.as_numpy("MODEL_INFO")[0, 0] == ref.as_numpy("MODEL_INFO")[0, 0]  # the same model's identity
        # still serving after the refusals
        assert np.abs(onnx_side.embed_texts(texts) - torch_side.embed_texts(texts)).max() <= 1e-4
