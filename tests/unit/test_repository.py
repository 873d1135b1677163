from __future__ import annotations

from pathlib import Path

import pytest

from vlserve.errors import InvalidInput, UnknownModelSpec
from vlserve.serving.repository import MODELS, build_repository

TOP = Path(__file__).resolve().parents[2]


def test_checked_in_repository_is_what_the_builder_writes(tmp_path):
    build_repository(tmp_path, "toy")
    for model in MODELS:
        for rel in ("config.pbtxt", "1/model.py"):
            assert (TOP / "model_repository" / model / rel).read_text() == (tmp_path / model / rel).read_text(), \
                f"model_repository/{model}/{rel} drifted: run `vlserve repo build --model toy`"


def test_several_families_side_by_side(tmp_path):
    build_repository(tmp_path, "open_clip:ViT-B-32?init=random", prefix="clip_")
    build_repository(tmp_path, "hf:google/siglip-base-patch16-224", prefix="siglip_")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([f"{p}{m}" for p in ("clip_", "siglip_") for m in MODELS])
    cfg = (tmp_path / "siglip_text_encoder" / "config.pbtxt").read_text()
    assert 'name: "siglip_text_encoder"' in cfg and 'string_value: "hf:google/siglip-base-patch16-224"' in cfg
    assert "dynamic_batching" in cfg and "max_batch_size: 64" in cfg and "KIND_AUTO" in cfg


def test_bad_builder_input(tmp_path):
    with pytest.raises(UnknownModelSpec):
        build_repository(tmp_path, "nope:x")
    with pytest.raises(InvalidInput, match="unknown repository model"):
        build_repository(tmp_path, "toy", models=("detector",))
    assert not any(tmp_path.iterdir())  # nothing written for refused input
