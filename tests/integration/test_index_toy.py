"""Retrieval quality and the index contract with the trained toy model (Matryoshka, 128 dims): a
600-scene toy gallery, text->image, image->image, refusal of other models, add/delete.

Why 600 scenes: precision@10 needs well over 10 relevant images. The test split is half multi-object
scenes, where the toy model sometimes binds colour and shape across objects ("a red star" -> a red
circle next to a green star). With 200 scenes there are 13 red stars and precision@10 was 0.8 (mean
0.83 over the colour-shape pairs with >= 10 relevant); with 600 (33 red stars) 1.0 (mean 0.96)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.integration
N_GALLERY = 600


def write_toy_gallery(folder: Path, n: int) -> dict[str, list]:
    """Toy test scenes as JPEGs + captions.csv (3 per image); returns source path -> objects."""
    from vlserve.toyworld.dataset import sample

    (folder / "images").mkdir(parents=True)
    objects = {}
    with (folder / "captions.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption"])
        for i in range(n):
            s = sample("test", i, n_captions=3)
            name = f"images/test_{i:06d}.jpg"
            Image.fromarray(s.scene.image).save(folder / name, quality=95)
            objects[str((folder / name).resolve())] = s.scene.objects
            for text, _ in s.captions:
                w.writerow([name, text])
    return objects


@pytest.fixture(scope="module")
def toy():
    from vlserve.models import load_dual_encoder

    return load_dual_encoder("toy")


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, toy):
    from vlserve.ingest.pipeline import BuildOptions, build

    root = tmp_path_factory.mktemp("toy")
    objects = write_toy_gallery(root / "gal", N_GALLERY)
    report = build(root / "idx", "toy", [str(root / "gal" / "captions.csv")],
                   BuildOptions(workers=1, batch_size=32, shard_size=50, progress=False), encoder=toy)
    assert report["count"] == N_GALLERY
    return root, objects


def open_index(root: Path):
    from vlserve.retrieval.store import ImageTextIndex

    return ImageTextIndex.open(root / "idx", "toy")


def test_manifest_records_the_toy_model_and_its_funnel(gallery, toy):
    idx = open_index(gallery[0])
    m = idx.manifest
    assert m.model_spec == "toy" and m.fingerprint == toy.fingerprint and m.dim == 128
    assert m.matryoshka_dims == [16, 32, 64, 128] and m.coarse_dims == 16 and m.funnel
    idx.close()


@pytest.mark.parametrize("dimensions", [None, 64])
def test_text_query_a_red_star_returns_red_stars(gallery, toy, dimensions):
    from vlserve.retrieval.query import Searcher
    from vlserve.toyworld.captions import query_spec

    root, objects = gallery
    idx = open_index(root)
    want = query_spec(colour="red", shape="star")
    assert sum(want.satisfied_by(o) for o in objects.values()) >= 10
    hits = Searcher(idx, toy).by_text(["a red star"], k=10, dimensions=dimensions)[0].hits
    precision = np.mean([want.satisfied_by(objects[h.source]) for h in hits])
    assert len(hits) == 10 and precision >= 0.9, [(h.source, objects[h.source]) for h in hits]
    idx.close()


def test_text_queries_for_every_colour_and_shape(gallery, toy):
    """Not one lucky query: mean precision@10 over all 36 "a {colour} {shape}" queries."""
    from vlserve.retrieval.query import Searcher
    from vlserve.toyworld.captions import query_spec
    from vlserve.toyworld.scene import COLOURS, SHAPES

    root, objects = gallery
    idx = open_index(root)
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    pages = Searcher(idx, toy).by_text([f"a {c} {s}" for c, s in pairs], k=10)
    precision = {f"{c} {s}": np.mean([query_spec(colour=c, shape=s).satisfied_by(objects[h.source]) for h in p.hits])
                 for (c, s), p in zip(pairs, pages, strict=True)}
    assert np.mean(list(precision.values())) >= 0.9, precision
    idx.close()


def test_image_query_returns_the_same_object_type(gallery, toy):
    from vlserve.retrieval.query import Searcher
    from vlserve.toyworld.dataset import single_object
    from vlserve.toyworld.scene import SHAPES

    root, objects = gallery
    idx = open_index(root)
    s = Searcher(idx, toy)
    precisions = {}
    queries = {}
    i = 0
    while len(queries) < len(SHAPES):  # one held-out single-object image per shape
        scene = single_object("val", i)
        queries.setdefault(scene.objects[0].shape, scene.image)
        i += 1
    for shape, image in queries.items():
        hits = s.by_image([image], k=10)[0].hits
        precisions[shape] = np.mean([any(o.shape == shape for o in objects[h.source]) for h in hits])
    # v2 galleries mix styles: an image query also pulls its own colour and drawing style (measured 0.70 here;
    # 0.92 on the single-style v1 world). Chance is ~0.3 (a shape occurs in ~30% of scenes).
    assert np.mean(list(precisions.values())) >= 0.6, precisions
    idx.close()


def test_other_models_and_dimensions_are_refused(gallery, tiny_dirs):
    from conftest import spec_for

    from vlserve.errors import IndexModelMismatch
    from vlserve.models import load_dual_encoder
    from vlserve.retrieval.query import Searcher

    idx = open_index(gallery[0])
    with pytest.raises(IndexModelMismatch, match="built with model 'toy'"):
        Searcher(idx, load_dual_encoder(spec_for("open_clip_clip", tiny_dirs["open_clip_clip"])))
    with pytest.raises(IndexModelMismatch, match="32 dimensions; index 'toy' holds 128"):
        Searcher(idx).by_embedding(np.ones(32, np.float32))
    idx.close()


def test_add_and_delete_round_trip(gallery, toy, tmp_path):
    from vlserve.ingest.pipeline import BuildOptions, build
    from vlserve.retrieval.query import Searcher
    from vlserve.toyworld.dataset import single_object

    root, _ = gallery
    new = tmp_path / "red_star.png"
    i = 0
    while not ((o := single_object("val", i).objects[0]).shape == "star" and o.colour == "red"):
        i += 1
    Image.fromarray(single_object("val", i).image).save(new)
    report = build(root / "idx", "toy", [str(new)], BuildOptions(workers=0, progress=False), encoder=toy)
    assert report["added"] == 1 and report["count"] == N_GALLERY + 1
    idx = open_index(root)
    s = Searcher(idx, toy)
    top = s.by_image([new.read_bytes()], k=1)[0].hits[0]
    assert top.source == str(new.resolve()) and top.score > 0.999
    assert str(new.resolve()) in [h.source for h in s.by_text(["a red star"], k=20)[0].hits]
    assert idx.remove([top.id]) == 1 and idx.manifest.count == N_GALLERY
    assert str(new.resolve()) not in [h.source for h in s.by_text(["a red star"], k=N_GALLERY)[0].hits]
    idx.close()
