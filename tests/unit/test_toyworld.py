"""The procedural world: deterministic, disjoint splits, and labels that agree with the pixels."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from vlserve.toyworld.captions import made_up_name
from vlserve.toyworld.dataset import labelled_set, novel_object, sample
from vlserve.toyworld.novel import NOVEL_CLASSES, RESERVED_NAMES, novel_descriptors
from vlserve.toyworld.scene import COLOURS, MIN_VISIBLE_FRACTION, SHAPES, render_scene, shape_mask


def test_deterministic_from_seed():
    a, b = sample("test", 7, n_captions=3), sample("test", 7, n_captions=3)
    assert np.array_equal(a.scene.image, b.scene.image) and [c for c, _ in a.captions] == [c for c, _ in b.captions]
    assert not np.array_equal(sample("test", 8).scene.image, a.scene.image)


def test_splits_never_overlap():
    digest = {s: {hashlib.sha1(sample(s, i).scene.image.tobytes()).hexdigest() for i in range(300)}
              for s in ("train", "val", "test")}
    assert not digest["train"] & digest["test"] and not digest["train"] & digest["val"]
    assert not digest["val"] & digest["test"]


@pytest.mark.parametrize("index", range(40))
def test_boxes_and_masks_agree_with_drawn_pixels(index):
    rng = np.random.default_rng(index)
    scene = render_scene(rng)
    assert 1 <= len(scene.objects) <= 3
    instance, semantic = scene.instance_mask(), scene.semantic_mask()
    for k, obj in enumerate(scene.objects):
        ys, xs = np.nonzero(obj.mask)
        assert obj.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert (instance == k + 1).sum() == obj.area > 0
        assert (semantic[obj.mask] == 1 + SHAPES.index(obj.shape)).all()
        # the visible pixels carry the object's colour, not the background's
        mean = scene.image[obj.mask].astype(float).mean(0)
        nearest = min(COLOURS, key=lambda c: np.linalg.norm(mean - np.array(COLOURS[c])))
        assert nearest == obj.colour
    assert (semantic == 0).sum() == (instance == 0).sum()


def test_occlusion_happens_but_keeps_each_object_mostly_visible():
    occluded = 0
    for i in range(60):
        scene = render_scene(np.random.default_rng(1000 + i), n_objects=3)
        for obj in scene.objects:
            assert MIN_VISIBLE_FRACTION * obj.full_area <= obj.area <= obj.full_area
            occluded += obj.area < obj.full_area
    assert occluded >= 10


def test_shape_masks_differ_by_shape():
    masks = {s: shape_mask(s, (32, 32), 30, 0.0) for s in SHAPES}
    for a in SHAPES:
        for b in SHAPES:
            if a < b:
                assert (masks[a] ^ masks[b]).sum() > 40, (a, b)


def test_captions_are_true_of_their_scene():
    for i in range(200):
        s = sample("val", i, n_captions=3)
        for text, spec in s.captions:
            assert text and spec.satisfied_by(s.scene.objects), text


def test_novel_names_never_appear_in_training_text():
    names = set(NOVEL_CLASSES)
    rng = np.random.default_rng(0)
    assert not names & {made_up_name(rng, RESERVED_NAMES) for _ in range(20_000)}
    words = {w.strip(".,") for i in range(2000) for c, _ in sample("train", i).captions for w in c.split()}
    assert not names & words
    assert len(NOVEL_CLASSES) >= 10 and set(novel_descriptors()) == names
    assert all(isinstance(d, list) and all(isinstance(x, str) for x in d) for d in novel_descriptors().values())


def test_novel_images_show_their_class():
    scene, name = novel_object("test", 5)
    colour, shape = NOVEL_CLASSES[name]
    assert (scene.objects[0].colour, scene.objects[0].shape) == (colour, shape)
    images, labels, classes = labelled_set("test", "novel", 24)
    assert sorted(set(labels)) == sorted(classes) and len(images) == 24
