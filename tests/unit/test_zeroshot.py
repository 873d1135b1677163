"""Zero-shot heads, scores and the text cache, on tiny random models (quality is tested on the toy model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import spec_for

from vlserve.errors import InvalidInput, NotFound, Unsupported
from vlserve.models import load_dual_encoder
from vlserve.models.text_cache import TextEmbeddingCache
from vlserve.zeroshot.classifier import ZeroShotClassifier
from vlserve.zeroshot.descriptors import (
    descriptor_prompt,
    load_descriptor_file,
    make_descriptor_sentence,
    waffle_descriptors,
)
from vlserve.zeroshot.heads import DescriptorHead, TemplateHead, load_head, save_head
from vlserve.zeroshot.templates import resolve_templates, template_set


@pytest.fixture(scope="module")
def clip(tiny_dirs):
    return load_dual_encoder(spec_for("open_clip_clip", tiny_dirs["open_clip_clip"]))


@pytest.fixture(scope="module")
def siglip(tiny_dirs):
    return load_dual_encoder(spec_for("open_clip_siglip", tiny_dirs["open_clip_siglip"]))


def test_template_head_matches_open_clip_builder(clip, tiny_dirs):
    import open_clip
    from open_clip.zero_shot_classifier import build_zero_shot_classifier

    ref_model, _, _ = open_clip.create_model_and_transforms(f"local-dir:{tiny_dirs['open_clip_clip']}")
    tok = open_clip.get_tokenizer(f"local-dir:{tiny_dirs['open_clip_clip']}")
    classes, templates = ["cat", "dog", "red star"], template_set("simple")
    ref = build_zero_shot_classifier(ref_model.eval(), tok, classes, [lambda c, t=t: t.format(c) for t in templates],
                                     device="cpu", use_tqdm=False)
    head = TemplateHead.build(clip, classes, templates)
    np.testing.assert_allclose(head.embeddings, ref.T.numpy(), atol=1e-5)
    assert len(template_set("openai")) == 80 and len(template_set("simple")) == 7


def test_menon_prompt_rule():
    assert make_descriptor_sentence("a large cat") == "which is a large cat"
    assert make_descriptor_sentence("has stripes") == "which has stripes"
    assert make_descriptor_sentence("often found in jungles") == "which often found in jungles"
    assert make_descriptor_sentence("used for hunting") == "which is used for hunting"
    assert make_descriptor_sentence("orange fur") == "which has orange fur"
    assert descriptor_prompt("bald_eagle", "white head") == "bald eagle, which has white head"


def test_descriptor_score_is_mean_of_cosines_not_cosine_of_mean(clip, sample_images):
    descs = {"alpha": ["red color", "red color"], "beta": ["a star", "stripes everywhere", "made of glass"]}
    head = DescriptorHead.build(clip, descs)
    img = clip.encode_images(sample_images)
    emb = clip.encode_texts([descriptor_prompt(c, d) for c in descs for d in descs[c]])
    sims = img @ emb.T
    expected = np.stack([sims[:, :2].mean(1), sims[:, 2:].mean(1)], 1)
    np.testing.assert_allclose(head.cosines(img), expected, atol=1e-5)
    # the template rule (cosine to the re-normalised mean) divides each class by |mean embedding|
    mean_beta = emb[2:].mean(0)
    cos_of_mean = img @ (mean_beta / np.linalg.norm(mean_beta))
    np.testing.assert_allclose(cos_of_mean, expected[:, 1] / np.linalg.norm(mean_beta), atol=1e-5)
    assert np.linalg.norm(mean_beta) < 0.999  # so the two rules really differ for diverse descriptors
    assert not np.allclose(cos_of_mean, expected[:, 1], atol=1e-3)
    # identical descriptors: both rules agree
    mean_alpha = emb[:2].mean(0)
    np.testing.assert_allclose(img @ (mean_alpha / np.linalg.norm(mean_alpha)), expected[:, 0], atol=1e-5)


def test_explanations_sorted_by_contribution(clip, sample_images):
    clf = ZeroShotClassifier(clip)
    head = clf.descriptors_head({"tiger": ["has stripes", "has claws", "a large cat"], "cup": ["a handle"]})
    pred = clf.classify(sample_images[:1], head, top_k=2)[0]
    for item in pred.labels:
        sims = [e["similarity"] for e in item["explanation"]]
        assert sims == sorted(sims, reverse=True)
        assert np.mean(sims) == pytest.approx(item["cosine"], abs=1e-3)
    assert "mean of descriptor cosines" in pred.rule


def test_siglip_scores_equal_reference_sigmoid(siglip, tiny_dirs, sample_images):
    import open_clip

    labels = ["cat", "dog", "a red star", "a blue circle"]
    clf = ZeroShotClassifier(siglip)
    head = clf.labels_head(labels, ["{}"])
    preds = clf.classify(sample_images, head, top_k=len(labels))
    ref, _, pre = open_clip.create_model_and_transforms(f"local-dir:{tiny_dirs['open_clip_siglip']}")
    tok = open_clip.get_tokenizer(f"local-dir:{tiny_dirs['open_clip_siglip']}")
    from PIL import Image

    with torch.no_grad():
        i = ref.eval().encode_image(torch.stack([pre(Image.fromarray(a)) for a in sample_images]), normalize=True)
        t = ref.encode_text(tok(labels), normalize=True)
        expected = torch.sigmoid(ref.logit_scale.exp() * i @ t.T + ref.logit_bias).numpy()
    for k, p in enumerate(preds):
        got = {x["label"]: x["score"] for x in p.labels}
        np.testing.assert_allclose([got[lab] for lab in labels], expected[k], atol=1e-5)
        assert p.multi_label and p.rule.startswith("sigmoid")
        assert abs(sum(got.values()) - 1) > 1e-3  # independent probabilities
    soft = clf.classify(sample_images[:1], head, top_k=4, multi_label=False)[0]
    assert sum(x["score"] for x in soft.labels) == pytest.approx(1, abs=1e-5) and not soft.multi_label


def test_clip_softmax_and_refuses_multi_label(clip, sample_images):
    clf = ZeroShotClassifier(clip)
    head = clf.labels_head(["a", "b", "c"])
    p = clf.classify(sample_images[:1], head, top_k=3)[0]
    assert sum(x["score"] for x in p.labels) == pytest.approx(1, abs=1e-5) and p.rule.startswith("softmax")
    with pytest.raises(Unsupported, match="SigLIP"):
        clf.classify(sample_images[:1], head, multi_label=True)
    assert clf.classify(sample_images[:1], head, abstain_threshold=0.99)[0].abstained
    assert not clf.classify(sample_images[:1], head, abstain_threshold=0.0)[0].abstained


@pytest.mark.parametrize(("labels", "message"), [
    ([], "empty label list"),
    (["cat", "dog", "cat"], "duplicate labels: 'cat'"),
    ([f"l{i}" for i in range(10_001)], "10001 labels exceed the limit of 10000"),
    (["ok", ""], "non-empty strings"),
])
def test_bad_label_sets(clip, labels, message):
    cache = TextEmbeddingCache()
    with pytest.raises(InvalidInput, match=message):
        ZeroShotClassifier(clip, cache).labels_head(labels)
    assert cache.misses == 0  # refused before any text was encoded


@pytest.mark.parametrize(("content", "message"), [
    ('["a", "b"]', "expected a JSON object"),
    ('{"cat": "stripes"}', "must map to a non-empty list"),
    ('{"cat": []}', "must map to a non-empty list"),
    ('{"cat": ["ok", 3]}', "not non-empty strings"),
    ('{"cat": ["ok"', "not valid JSON"),
    ("{}", "no classes"),
])
def test_bad_descriptor_files(tmp_path, content, message):
    f = tmp_path / "d.json"
    f.write_text(content)
    with pytest.raises(InvalidInput, match=message):
        load_descriptor_file(f)


def test_template_without_placeholder(clip):
    with pytest.raises(InvalidInput, match="no '\\{\\}' placeholder"):
        resolve_templates(["a photo of a thing"], [])
    with pytest.raises(InvalidInput, match="no '\\{\\}' placeholder"):
        TemplateHead.build(clip, ["cat"], ["a photo"])


def test_cache_repeat_encodes_nothing_and_persists(clip, tmp_path):
    db = tmp_path / "cache.sqlite"
    cache = TextEmbeddingCache(db)
    first = TemplateHead.build(clip, ["cat", "dog"], template_set("simple"), cache)
    assert cache.misses == 14 and cache.hits == 0
    TemplateHead.build(clip, ["cat", "dog"], template_set("simple"), cache)
    assert cache.misses == 14 and cache.hits == 14
    fresh = TextEmbeddingCache(db)  # a new process: served from disk
    again = TemplateHead.build(clip, ["cat", "dog"], template_set("simple"), fresh)
    assert fresh.misses == 0 and fresh.hits == 14
    np.testing.assert_array_equal(first.embeddings, again.embeddings)
    small = TextEmbeddingCache(max_entries=3)
    small.encode(clip, ["a", "b", "c", "d"])
    assert len(small) == 3


def test_heads_register_persist_and_reload(clip, tmp_path, sample_images):
    clf = ZeroShotClassifier(clip, heads_dir=tmp_path)
    head = clf.descriptors_head({"x": ["has stripes", "a cat"], "y": ["red color"]}, name="animals")
    clf.register(head)
    again = ZeroShotClassifier(clip, heads_dir=tmp_path).head("animals")
    assert isinstance(again, DescriptorHead) and again.prompts == head.prompts
    np.testing.assert_array_equal(again.embeddings, head.embeddings)
    with pytest.raises(NotFound, match="no classifier head named 'nope'"):
        clf.head("nope")
    t = TemplateHead.build(clip, ["a", "b"], ["{}"])
    t.name = "ab"
    assert isinstance(load_head(save_head(t, tmp_path)), TemplateHead)
    json.loads((tmp_path / "ab.json").read_text())


def test_waffle_descriptors_share_one_pool():
    w = waffle_descriptors(["cat", "dog"], count=6, seed=1)
    assert w["cat"] == w["dog"] and len(w["cat"]) == 6
    assert waffle_descriptors(["cat"], count=6, seed=1) == {"cat": w["cat"]}
