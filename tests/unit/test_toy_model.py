"""The committed toy model (spec ``toy``) really learned its world: smaller-sample versions of the
bars measured by ``vlserve eval`` and recorded in benchmarks/results/."""

from __future__ import annotations

import numpy as np
import pytest

from vlserve.evaluation.metrics import attribute_precision, class_embeddings, descriptor_report, zero_shot_report
from vlserve.models import load_dual_encoder
from vlserve.toyworld.dataset import labelled_set, sample
from vlserve.toyworld.model import TOY_DIR
from vlserve.toyworld.novel import novel_descriptors
from vlserve.toyworld.queries import attribute_queries
from vlserve.zeroshot.heads import DescriptorHead, TemplateHead


@pytest.fixture(scope="module")
def toy():
    return load_dual_encoder("toy")


def test_embedded_default_is_small_and_loads_through_the_normal_loader(toy):
    size = sum(p.stat().st_size for p in TOY_DIR.iterdir())
    assert size <= 25 * 2**20
    info = toy.info()
    assert info["canonical_spec"] == "toy" and info["backend"] == "open_clip" and info["embed_dim"] == 128


@pytest.mark.parametrize(("task", "template"), [("shape", "a photo of a {}."), ("colour", "a photo of a {} object.")])
def test_zero_shot_shape_and_colour(toy, task, template):
    images, labels, classes = labelled_set("test", task, 600)
    report = zero_shot_report(toy.encode_images(images), class_embeddings(toy, classes, [template]), labels, classes,
                              [128, 32])
    full, quarter = report["by_dim"]["128"]["top1"], report["by_dim"]["32"]["top1"]
    # the full evaluation (1,200 images) measured shape 0.952 and colour 0.998 on the v2 test split
    assert full >= (0.93 if task == "shape" else 0.98)
    assert quarter >= 0.97 * full  # Matryoshka: D/4 keeps the accuracy


def test_text_to_image_precision_at_10(toy):
    scenes = [sample("test", i).scene for i in range(600)]
    queries, specs = attribute_queries()
    hits = np.array([[spec.satisfied_by(s.objects) for s in scenes] for spec in specs])
    precision = attribute_precision(toy.encode_images([s.image for s in scenes]), toy.encode_texts(queries), hits,
                                    [128, 32])
    assert precision["128"] >= 0.9 and precision["32"] >= 0.85


def test_novel_classes_need_descriptions(toy):
    images, labels, classes = labelled_set("test", "novel", 360)
    img = toy.encode_images(images)
    by_description = descriptor_report(DescriptorHead.build(toy, novel_descriptors()), img, labels, [128])
    name_only = zero_shot_report(img, TemplateHead.build(toy, classes, ["a photo of a {}."]).embeddings, labels,
                                 classes, [128])
    assert by_description["by_dim"]["128"]["top1"] >= 0.8
    assert name_only["by_dim"]["128"]["top1"] <= 2.0 * name_only["chance"]  # ~chance; the full eval bar is 1.5x


@pytest.mark.parametrize(("split", "task", "template"), [("heldout", "shape", "a photo of a {}."),
                                                         ("heldout", "colour", "a photo of a {} object."),
                                                         ("test", "rotated", "a photo of a {}.")])
def test_generalises_to_the_heldout_rasteriser_and_to_any_rotation(toy, split, task, template):
    """Shapes drawn by a separately written rasteriser (never seen in training), and shapes turned
    through every angle, are still recognised, with no class left behind."""
    images, labels, classes = labelled_set(split, task, 240)
    report = zero_shot_report(toy.encode_images(images), class_embeddings(toy, classes, [template]), labels, classes,
                              [128])["by_dim"]["128"]
    assert report["top1"] >= 0.9
    assert min(report["per_class_top1"].values()) >= 0.8, report["per_class_top1"]


@pytest.mark.parametrize(("task", "template"), [("shape", "a photo of a {}."), ("colour", "a photo of a {} object.")])
def test_still_knows_the_v1_world(toy, task, template):
    """Every v1 class whose definition v2 kept is still recognised. v1's diamond (an upright rhombus
    with axes 1 : 0.85) is, once any rotation is allowed, a square turned by 45 degrees squashed by
    15%; v2 defines the diamond as a clearly elongated rhombus (axes 1 : 0.5-0.66) so that the two
    classes stay apart at every angle, and the model calls v1's diamonds squares."""
    images, labels, classes = labelled_set("test", task, 240, world="v1")
    report = zero_shot_report(toy.encode_images(images), class_embeddings(toy, classes, [template]), labels, classes,
                              [128])["by_dim"]["128"]
    kept = {c: acc for c, acc in report["per_class_top1"].items() if c != "diamond"}
    assert min(kept.values()) >= 0.95, kept


def test_toy_vit_loads_as_a_transformers_clip_and_knows_colour_and_some_shape():
    """The toy OWL-ViT's contrastive towers (``toy-vit``): a transformers CLIP ViT through the normal
    ``hf:`` loader, under the size budget, with the zero-shot figures measured on 300 test images
    (benchmarks/results/toy_vit_eval_zeroshot_*.json: colour 1.00, shape 0.54) held on 120."""
    from vlserve.toyworld.owl import TOY_VIT_DIR

    assert sum(p.stat().st_size for p in TOY_VIT_DIR.iterdir()) <= 25 * 2**20
    vit = load_dual_encoder("toy-vit")
    info = vit.info()
    assert info["canonical_spec"] == "toy-vit" and info["backend"] == "hf" and info["family"] == "clip"
    assert tuple(info["image_size"]) == (96, 96) and info["embed_dim"] == 128
    for task, template, floor in (("colour", "a photo of a {} object.", 0.95), ("shape", "a photo of a {}.", 0.4)):
        images, labels, classes = labelled_set("test", task, 120)
        report = zero_shot_report(vit.encode_images(images), class_embeddings(vit, classes, [template]), labels,
                                  classes, [128])
        assert report["by_dim"]["128"]["top1"] >= floor, (task, report["by_dim"])
