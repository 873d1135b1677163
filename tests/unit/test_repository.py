from __future__ import annotations

from pathlib import Path

import pytest

from vlserve.api.tensors import ENCODER_MODELS
from vlserve.errors import InvalidInput, UnknownModelSpec
from vlserve.serving.repository import build_repository

TOP = Path(__file__).resolve().parents[2]


def test_checked_in_repository_is_what_the_builder_writes(tmp_path):
    build_repository(tmp_path, "toy")
    assert not (TOP / "model_repository" / "detector").exists()  # no detector spec by default: no detector
    for model in ENCODER_MODELS:
        for rel in ("config.pbtxt", "1/model.py"):
            assert (TOP / "model_repository" / model / rel).read_text() == (tmp_path / model / rel).read_text(), \
                f"model_repository/{model}/{rel} drifted: run `vlserve repo build --model toy`"


def test_several_families_side_by_side(tmp_path):
    build_repository(tmp_path, "open_clip:ViT-B-32?init=random", prefix="clip_")
    build_repository(tmp_path, "hf:google/siglip-base-patch16-224", prefix="siglip_")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([f"{p}{m}" for p in ("clip_", "siglip_") for m in ENCODER_MODELS])
    cfg = (tmp_path / "siglip_text_encoder" / "config.pbtxt").read_text()
    assert 'name: "siglip_text_encoder"' in cfg and 'string_value: "hf:google/siglip-base-patch16-224"' in cfg
    assert "dynamic_batching" in cfg and "max_batch_size: 64" in cfg and "KIND_AUTO" in cfg


def test_bad_builder_input(tmp_path):
    with pytest.raises(UnknownModelSpec):
        build_repository(tmp_path, "nope:x")
    with pytest.raises(InvalidInput, match="unknown repository model"):
        build_repository(tmp_path, "toy", models=("segmenter",))
    with pytest.raises(InvalidInput, match="needs a detector spec"):
        build_repository(tmp_path, "toy", models=("detector",))
    with pytest.raises(UnknownModelSpec):
        build_repository(tmp_path, "toy", detector_spec="nope:x")
    assert not any(tmp_path.iterdir())  # nothing written for refused input


def test_the_detector_is_written_only_for_a_detector_spec(tmp_path):
    build_repository(tmp_path, "toy")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(ENCODER_MODELS)
    build_repository(tmp_path, "toy", detector_spec="hf:/models/owlv2")
    cfg = (tmp_path / "detector" / "config.pbtxt").read_text()
    assert 'name: "detector"' in cfg and 'string_value: "hf:/models/owlv2"' in cfg
    assert 'string_value: "toy"' in (tmp_path / "image_encoder" / "config.pbtxt").read_text()
    assert "backend_models.detector import TritonPythonModel" in (tmp_path / "detector" / "1" / "model.py").read_text()
    build_repository(tmp_path, "toy", models=("image_encoder",))  # a partial build leaves the detector alone
    assert (tmp_path / "detector").is_dir()
    build_repository(tmp_path, "toy")  # a full build without a detector spec removes the stale detector
    assert not (tmp_path / "detector").exists()
