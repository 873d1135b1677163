"""vlserve's loaders and encoders give exactly what each reference library's own forward gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import spec_for
from PIL import Image

from vlserve.models import load_dual_encoder

TEXTS = ["a red star", "a photo of a dog", "the cat " * 60]  # the last one is longer than any context
FAMILY = {"open_clip_clip": "clip", "open_clip_siglip": "siglip", "hf_clip": "clip", "hf_siglip": "siglip",
          "hf_align": "align"}


def _open_clip_reference(path, pils):
    import open_clip

    model, _, pre = open_clip.create_model_and_transforms(f"local-dir:{path}")
    tok = open_clip.get_tokenizer(f"local-dir:{path}")
    model.eval()
    with torch.no_grad():
        img = model.encode_image(torch.stack([pre(p) for p in pils]), normalize=True)
        txt = model.encode_text(tok(TEXTS), normalize=True)
        logits = model.logit_scale.exp() * img @ txt.T
        if model.logit_bias is not None:
            logits = logits + model.logit_bias
    return img.numpy(), txt.numpy(), logits


def _hf_reference(path, pils, family):
    import transformers

    cls = {"clip": transformers.CLIPModel, "siglip": transformers.SiglipModel, "align": transformers.AlignModel}
    model = cls[family].from_pretrained(path).eval()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    improc = transformers.AutoImageProcessor.from_pretrained(path)
    padding = "max_length" if family == "siglip" else True  # each model card's usage
    enc = tok(TEXTS, padding=padding, truncation=True, return_tensors="pt",
              max_length=model.config.text_config.max_position_embeddings)
    with torch.no_grad():
        out = model(**enc, pixel_values=improc(images=pils, return_tensors="pt")["pixel_values"])
    return out.image_embeds.numpy(), out.text_embeds.numpy(), out.logits_per_image


@pytest.mark.parametrize("key", list(FAMILY))
def test_embeddings_and_probabilities_match_reference(key, tiny_dirs, sample_images):
    path = tiny_dirs[key]
    pils = [Image.fromarray(a) for a in sample_images]
    model = load_dual_encoder(spec_for(key, path))
    assert model.family == FAMILY[key]
    img, txt = model.encode_images(sample_images), model.encode_texts(TEXTS)
    assert img.dtype == np.float32 and txt.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1, atol=1e-5)
    if key.startswith("open_clip"):
        ref_img, ref_txt, ref_logits = _open_clip_reference(path, pils)
    else:
        ref_img, ref_txt, ref_logits = _hf_reference(path, pils, FAMILY[key])
    assert np.abs(img - ref_img).max() <= 1e-5
    assert np.abs(txt - ref_txt).max() <= 1e-5
    ref_probs = torch.sigmoid(ref_logits) if FAMILY[key] == "siglip" else torch.softmax(ref_logits, dim=1)
    np.testing.assert_allclose(model.similarity_logits(img, txt), ref_logits.numpy(), atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(model.probabilities(img, txt), ref_probs.numpy(), atol=1e-5)
    if FAMILY[key] == "siglip":
        assert model.multi_label and not np.allclose(model.probabilities(img, txt).sum(1), 1)
    else:
        np.testing.assert_allclose(model.probabilities(img, txt).sum(1), 1, atol=1e-5)


@pytest.mark.parametrize("key", list(FAMILY))
def test_batch_equals_single_calls(key, tiny_dirs, sample_images):
    model = load_dual_encoder(spec_for(key, tiny_dirs[key]))
    batch = model.encode_images(sample_images)
    singles = np.concatenate([model.encode_images([a]) for a in sample_images])
    assert (np.sum(batch * singles, axis=1) >= 0.99999).all()
    tb = model.encode_texts(TEXTS)
    ts = np.concatenate([model.encode_texts([t]) for t in TEXTS])
    assert (np.sum(tb * ts, axis=1) >= 0.99999).all()


def test_internal_batching_is_invisible(tiny_dirs, sample_images):
    from vlserve.models import Runtime

    path = spec_for("hf_clip", tiny_dirs["hf_clip"])
    a = load_dual_encoder(path, Runtime(max_batch=1)).encode_images(sample_images * 3)
    b = load_dual_encoder(path, Runtime(max_batch=64)).encode_images(sample_images * 3)
    assert (np.sum(a * b, axis=1) >= 0.99999).all()


def test_info_and_fingerprint(tiny_dirs):
    spec = spec_for("open_clip_siglip", tiny_dirs["open_clip_siglip"])
    a, b = load_dual_encoder(spec), load_dual_encoder(spec)
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 16
    other = load_dual_encoder(spec_for("open_clip_clip", tiny_dirs["open_clip_clip"]))
    assert other.fingerprint != a.fingerprint
    info = a.info()
    assert info["family"] == "siglip" and info["multi_label"] is True and info["embed_dim"] == 32
    assert info["logit_bias"] == pytest.approx(-3.0) and info["device"] == "cpu" and info["dtype"] == "float32"
