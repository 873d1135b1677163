"""The Runtime comes from the settings in one place (explicit values win), and a Matryoshka
``dimensions`` applies to the descriptor explanation as it does to the class score."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import spec_for

from vlserve.matryoshka import truncate
from vlserve.models import load_dual_encoder
from vlserve.models.text_cache import TextEmbeddingCache
from vlserve.settings import Runtime, Settings
from vlserve.zeroshot.classifier import ZeroShotClassifier


def test_runtime_from_settings_with_overrides(monkeypatch):
    monkeypatch.setenv("VLSERVE_PRECISION", "bf16")
    monkeypatch.setenv("VLSERVE_MAX_BATCH", "7")
    monkeypatch.setenv("VLSERVE_MAX_IMAGE_PIXELS", "4096")
    s = Settings()
    assert s.runtime() == Runtime(device="auto", precision="bf16", max_batch=7, max_image_pixels=4096)
    assert s.runtime(device="cpu", precision="fp32", max_batch=2, max_image_pixels=10) == \
        Runtime(device="cpu", precision="fp32", max_batch=2, max_image_pixels=10)


def test_descriptor_explanation_is_computed_at_the_requested_dimension(tiny_dirs, sample_images):
    model = load_dual_encoder(spec_for("open_clip_clip", tiny_dirs["open_clip_clip"]))
    clf = ZeroShotClassifier(model, TextEmbeddingCache())
    head = clf.descriptors_head({"round": ["a circle", "curved edges", "a ball"], "boxy": ["a square", "corners"]})
    image = model.encode_images(sample_images[:1])
    for dims in (None, 8):
        label = clf.classify_embeddings(image, head, top_k=1, dimensions=dims)[0].labels[0]
        rows = head.owners == head.classes.index(label["label"])
        want = (truncate(image, dims) @ truncate(head.embeddings[rows], dims).T)[0]
        got = {e["descriptor"]: e["similarity"] for e in label["explanation"]}
        descs = head.descriptors[label["label"]]
        assert got == {d: round(float(w), 4) for d, w in zip(descs, want, strict=True)}
        assert label["cosine"] == pytest.approx(float(np.mean(want)), abs=1e-5)  # the score's own cosines
