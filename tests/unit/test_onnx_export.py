"""ONNX towers: exported from the encoder as vlserve computes it, they embed like torch under
onnxruntime (max |delta| <= 1e-4) for the toy model, tiny open_clip / transformers CLIP and SigLIP
models, and a ViT-B-32-sized random open_clip model, at batch sizes other than the one exported with."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import spec_for

from vlserve.models import load_dual_encoder
from vlserve.models.onnx_export import MANIFEST, OPSET, OnnxTowers, export_towers
from vlserve.settings import Runtime

pytest.importorskip("onnxruntime")
CPU = Runtime(device="cpu", precision="fp32")
TEXTS = ["a red star", "two blue circles and a hand-drawn green triangle outline, seen from above", "x"]


def parity(spec: str, out: Path, images: list[np.ndarray]) -> tuple[float, float]:
    encoder = load_dual_encoder(spec, CPU)
    manifest = export_towers(encoder, out)
    assert manifest["opset"] == OPSET and manifest["fingerprint"] == encoder.fingerprint
    assert json.loads((out / MANIFEST).read_text()) == manifest
    towers = OnnxTowers(out)
    pixels = encoder.preprocess(images)
    image = float(np.abs(encoder.encode_pixels(pixels) - towers.encode_pixels(pixels)).max())
    text = float(np.abs(encoder.encode_texts(TEXTS) - towers.encode_tokens(encoder._tokenize(TEXTS))).max())
    return image, text


def test_toy_model_towers_match_torch(tmp_path, sample_images):
    image, text = parity("toy", tmp_path, sample_images)
    assert image <= 1e-4 and text <= 1e-4, (image, text)


@pytest.mark.parametrize("key", ["open_clip_clip", "open_clip_siglip", "hf_clip", "hf_siglip"])
def test_tiny_model_towers_match_torch(key, tiny_dirs, tmp_path, sample_images):
    image, text = parity(spec_for(key, tiny_dirs[key]), tmp_path, sample_images)
    assert image <= 1e-4 and text <= 1e-4, (key, image, text)


@pytest.mark.slow
def test_vit_b32_sized_towers_match_torch(tmp_path, sample_images):
    image, text = parity("open_clip:ViT-B-32?init=random", tmp_path, sample_images)
    assert image <= 1e-4 and text <= 1e-4, (image, text)


def test_export_refuses_a_non_fp32_encoder(tmp_path):
    import torch

    encoder = load_dual_encoder("toy", Runtime(device="cpu", precision="bf16"))
    assert encoder.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="CPU fp32"):
        export_towers(encoder, tmp_path)


def test_repository_runtime_is_torch_or_onnx(tmp_path):
    from vlserve.errors import InvalidInput
    from vlserve.serving.repository import build_repository

    with pytest.raises(InvalidInput, match="runtime must be torch or onnx"):
        build_repository(tmp_path, "toy", runtime="tensorrt")
    assert not any(tmp_path.iterdir())  # refused before writing anything


def test_onnx_engine_refuses_graphs_of_another_model(tmp_path, tiny_dirs):
    from vlserve.errors import ModelUnavailable
    from vlserve.models.onnx_export import OnnxDualEncoder

    export_towers(load_dual_encoder("toy", CPU), tmp_path)
    other = load_dual_encoder(spec_for("open_clip_clip", tiny_dirs["open_clip_clip"]), CPU)
    with pytest.raises(ModelUnavailable, match="export them again"):
        OnnxDualEncoder(other, tmp_path)
