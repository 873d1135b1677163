"""GPU path: automatic device selection picks CUDA with fp16, and results match CPU fp32."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import spec_for

from vlserve.models import Runtime, load_dual_encoder

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("key", ["open_clip_clip", "hf_siglip"])
def test_auto_device_is_cuda_fp16_and_matches_cpu(key, tiny_dirs, sample_images):
    spec = spec_for(key, tiny_dirs[key])
    gpu = load_dual_encoder(spec)
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float16
    cpu = load_dual_encoder(spec, Runtime(device="cpu"))
    a, b = gpu.encode_images(sample_images), cpu.encode_images(sample_images)
    assert a.dtype == np.float32 and (np.sum(a * b, 1) >= 0.999).all()
    t_a, t_b = gpu.encode_texts(["a red star"]), cpu.encode_texts(["a red star"])
    assert float(np.sum(t_a * t_b)) >= 0.999
    assert gpu.fingerprint == cpu.fingerprint  # weights hashed before the cast


@pytest.mark.parametrize("family", ["owlvit", "owlv2"])
def test_detector_on_cuda_fp16_matches_cpu(family, tiny_owl, detection_images):
    from vlserve.detection import ObjectDetector
    from vlserve.models import load_detector

    gpu = ObjectDetector(load_detector(f"hf:{tiny_owl[family]}"))
    cpu = ObjectDetector(load_detector(f"hf:{tiny_owl[family]}", Runtime(device="cpu")))
    assert gpu.model.device.type == "cuda" and gpu.model.dtype == torch.float16
    queries = ["a red star", "a blue circle"]
    for kwargs in (dict(queries=queries), dict(query_images=[detection_images[1]])):
        a = gpu.detect(detection_images, **kwargs, threshold=0.0, nms_iou=1.0, top_k=5)
        b = cpu.detect(detection_images, **kwargs, threshold=0.0, nms_iou=1.0, top_k=5)
        for x, y in zip(a, b, strict=True):
            assert abs(x.detections[0].score - y.detections[0].score) <= 1e-2
            assert np.abs(np.array(x.detections[0].box) - np.array(y.detections[0].box)).max() <= 1.0
