"""vlserve's loaders and encoders give exactly what each reference library's own forward gives:
texts through each family's own processor and tokenizer (a real SentencePiece tokenizer for SigLIP),
images from encoded files of every kind through the reference library's documented path."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from conftest import spec_for
from image_files import image_files
from PIL import Image, ImageOps

from vlserve.models import load_dual_encoder

# mixed case, punctuation, non-ASCII, an empty string, and one longer than any context (SigLIP: 64 tokens)
TEXTS = ["a red star", "A Photo of a RED Star!", "café, naïve; ÜBER straße — zoë?", "", "the cat " * 60]
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


def _hf_model_and_processor(path, family):
    import transformers

    cls = {"clip": (transformers.CLIPModel, transformers.CLIPProcessor),
           "siglip": (transformers.SiglipModel, transformers.SiglipProcessor),
           "align": (transformers.AlignModel, transformers.AlignProcessor)}[family]
    return cls[0].from_pretrained(path).eval(), cls[1].from_pretrained(path)


def _hf_text_inputs(model, processor, family, texts):
    """Each family's processor with its model card's padding. SigLIP as the original model runs it:
    padded to 64 with pad = EOS and *no* attention mask (the processor's mask is dropped)."""
    padding = "max_length" if family == "siglip" else True
    enc = processor(text=texts, padding=padding, truncation=True, return_tensors="pt",
                    max_length=model.config.text_config.max_position_embeddings)
    return {"input_ids": enc["input_ids"]} if family == "siglip" else dict(enc)


def _hf_reference(path, pils, family):
    model, processor = _hf_model_and_processor(path, family)
    text = _hf_text_inputs(model, processor, family, TEXTS)
    with torch.no_grad():
        out = model(**text, pixel_values=processor(images=pils, return_tensors="pt")["pixel_values"])
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


def test_siglip_text_runs_without_attention_mask_as_the_original(tiny_dirs):
    """The tiny SigLIP has a real SentencePiece tokenizer (``SiglipTokenizer``, lower-casing, punctuation
    stripped, 64-token truncation). vlserve's text embedding equals the ``input_ids``-only forward, and
    that choice matters: the processor's default (with its attention mask) gives other embeddings."""
    from transformers import SiglipTokenizer

    path = tiny_dirs["hf_siglip"]
    model = load_dual_encoder(spec_for("hf_siglip", path))
    ref_model, processor = _hf_model_and_processor(path, "siglip")
    assert isinstance(processor.tokenizer, SiglipTokenizer) and model.context_length == 64
    ids = _hf_text_inputs(ref_model, processor, "siglip", TEXTS)["input_ids"]
    assert ids.shape == (len(TEXTS), 64) and (ids[:, -1] == processor.tokenizer.eos_token_id).all()
    # lower-casing and punctuation: "A Photo of a RED Star!" tokenises as "a photo of a red star"
    assert processor.tokenizer("A Photo of a RED Star!")["input_ids"] == processor.tokenizer("a photo of a red star")[
        "input_ids"]
    got = model.encode_texts(TEXTS)
    masked = processor(text=TEXTS, padding="max_length", truncation=True, max_length=64, return_tensors="pt")
    assert set(masked) == {"input_ids", "attention_mask"}
    with torch.no_grad():
        plain = ref_model.get_text_features(input_ids=ids).pooler_output
        with_mask = ref_model.get_text_features(**masked).pooler_output
    plain = torch.nn.functional.normalize(plain, dim=-1).numpy()
    with_mask = torch.nn.functional.normalize(with_mask, dim=-1).numpy()
    assert np.abs(got - plain).max() <= 1e-5
    # every text shorter than 64 tokens embeds differently with the mask; the 64-token one has no padding
    short = [i for i, t in enumerate(TEXTS) if len(processor.tokenizer(t)["input_ids"]) < 64]
    assert short == [0, 1, 2, 3]
    assert (np.abs(got[short] - with_mask[short]).max(axis=1) > 1e-2).all()
    assert np.abs(got[4] - with_mask[4]).max() <= 1e-5


# Where vlserve's decoding departs from the reference library's documented path (``Image.open`` + the
# library's own transform/processor), the reference is fed the image as vlserve defines it, and the test
# checks that the departure is real (the plain reference differs). See docs/fidelity.md.
def _white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    canvas = Image.new("RGB", rgba.size, (255, 255, 255))
    canvas.paste(rgba, mask=rgba.getchannel("A"))
    return canvas


def _sixteen_to_eight(img: Image.Image) -> Image.Image:
    return Image.fromarray(np.round(np.asarray(img, np.float64) / 257).astype(np.uint8), "L")


def _as_vlserve_defines(key: str, kind: str, img: Image.Image) -> tuple[Image.Image, str | None]:
    """(the reference's input, why it is not the plain ``Image.open`` result, or None)."""
    if kind == "jpeg_exif_rotated":
        return ImageOps.exif_transpose(img), "EXIF orientation applied"
    if kind == "png_16bit":
        return _sixteen_to_eight(img), "16-bit scaled to 8 bits (PIL's convert clips at 255)"
    if kind == "png_alpha" and key in ("open_clip_clip", "open_clip_siglip", "hf_align"):
        return _white(img), "alpha composited on white"
    if kind == "png_palette" and key in ("open_clip_clip", "open_clip_siglip", "hf_align"):
        return img.convert("RGB"), "palette converted to RGB before resizing"
    return img, None


def _reference_image_encoder(key, path):
    if key.startswith("open_clip"):
        import open_clip

        model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{path}")
        model.eval()
        return lambda im: model.encode_image(preprocess(im)[None], normalize=True)
    family = FAMILY[key]
    model, processor = _hf_model_and_processor(path, family)

    def encode(im):
        px = processor(images=im, return_tensors="pt")["pixel_values"]
        return torch.nn.functional.normalize(model.get_image_features(pixel_values=px).pooler_output, dim=-1)

    return encode


@pytest.mark.parametrize("key", list(FAMILY))
def test_image_files_match_the_reference_path(key, tiny_dirs):
    """Encoded files of every kind, bytes into vlserve vs ``Image.open`` + the reference transform."""
    files = image_files()
    model = load_dual_encoder(spec_for(key, tiny_dirs[key]))
    reference = _reference_image_encoder(key, tiny_dirs[key])
    got = model.encode_images(list(files.values()))
    deltas, departures = {}, {}
    with torch.no_grad():
        for row, (kind, data) in zip(got, files.items(), strict=True):
            plain = Image.open(io.BytesIO(data))
            ref_input, why = _as_vlserve_defines(key, kind, plain)
            deltas[kind] = float(np.abs(row - reference(ref_input).numpy()[0]).max())
            if why is not None:
                try:
                    departures[kind] = float(np.abs(row - reference(Image.open(io.BytesIO(data))).numpy()[0]).max())
                except (RuntimeError, ValueError):  # e.g. ALIGN's processor cannot take an RGBA image
                    departures[kind] = float("inf")
    assert max(deltas.values()) <= 1e-5, deltas
    assert departures and min(departures.values()) > 1e-3, departures  # each departure changes the result
