"""The index store end to end in-process with a tiny random model: build, dedup, manifest checks,
add/remove, pagination, filters, image->text, crash repair; every test on both vector backends, FAISS
files and Milvus (Milvus Lite, the real engine in-process), which must give the same hits. Retrieval
*quality* is tested with the toy model in tests/integration/test_index_toy.py."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import spec_for
from PIL import Image

from vlserve.errors import IndexModelMismatch, InvalidInput, NotFound
from vlserve.ingest.pipeline import BuildOptions, build
from vlserve.models import Runtime, load_dual_encoder
from vlserve.retrieval.manifest import IndexManifest, choose_coarse_dims
from vlserve.retrieval.query import Searcher
from vlserve.retrieval.store import ImageTextIndex


def write_gallery(folder: Path, n: int, start: int = 0, colours: bool = True) -> Path:
    """``n`` toy-world scenes as JPEGs plus a captions.csv with a ``colour`` metadata column."""
    from vlserve.toyworld.dataset import sample

    (folder / "images").mkdir(parents=True, exist_ok=True)
    with (folder / "captions.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption", "colour"])
        for i in range(start, start + n):
            s = sample("test", i, n_captions=2)
            name = f"images/{i:05d}.jpg"
            Image.fromarray(s.scene.image).save(folder / name, quality=92)
            for text, _ in s.captions:
                w.writerow([name, text, s.scene.objects[0].colour if colours else ""])
    return folder


@pytest.fixture(scope="module")
def encoder(tiny_dirs):
    return load_dual_encoder(spec_for("open_clip_clip", tiny_dirs["open_clip_clip"]), Runtime(max_batch=16))


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Path:
    return write_gallery(tmp_path_factory.mktemp("gal"), 40)


OPTS = {"workers": 0, "batch_size": 8, "shard_size": 10, "progress": False}
BACKEND: dict[str, str | None] = {"value": "faiss", "uri": None}


@pytest.fixture(params=["faiss", "milvus", "milvus-server"], autouse=True)
def backend(request, monkeypatch):
    """Every test runs on each backend: FAISS files, Milvus Lite (in-process) and a Milvus server with
    authentication (the token from VLSERVE_MILVUS_TOKEN); a new index takes the current one (see
    run_build). The server starts empty for each test, as a fresh deployment would."""
    BACKEND["uri"] = None
    if request.param.startswith("milvus"):
        pytest.importorskip("pymilvus")
        pytest.importorskip("milvus_lite")
    if request.param == "milvus-server":
        uri, token = request.getfixturevalue("milvus_server")
        monkeypatch.setenv("VLSERVE_MILVUS_TOKEN", token)
        from vlserve.retrieval.milvus_collection import client

        admin = client(uri, token)
        for name in admin.list_collections():
            admin.drop_collection(name)
        BACKEND["uri"] = uri
    BACKEND["value"] = "faiss" if request.param == "faiss" else "milvus"
    yield request.param
    BACKEND.update(value="faiss", uri=None)


def run_build(root: Path, source, encoder, name="g", **kw):
    opts = {**OPTS, "backend": BACKEND["value"], **({"uri": BACKEND["uri"]} if BACKEND["uri"] else {}), **kw}
    return build(root, name, [str(source)] if not isinstance(source, list) else source,
                 BuildOptions(**opts), model=encoder.spec.raw, encoder=encoder)


def test_build_is_idempotent_and_writes_a_full_manifest(tmp_path, gallery, encoder):
    r = run_build(tmp_path, gallery / "captions.csv", encoder)
    assert r["added"] == 40 and r["count"] == 40 and r["text_count"] > 40 and r["shards_done"] == 4
    again = run_build(tmp_path, gallery / "captions.csv", encoder)
    assert again["added"] == 0 and again["shards_skipped"] == 4 and again["count"] == 40
    m = IndexManifest.load(tmp_path / "g")
    assert m.model_spec == encoder.spec.raw and m.fingerprint == encoder.fingerprint and m.dim == 32
    assert m.factory == "Flat" and m.coarse_dims == 32 and m.normalized and m.metric == "inner_product"
    assert m.backend == BACKEND["value"] and m.uri == BACKEND["uri"]
    assert m.vlserve_version and m.created_at <= m.updated_at
    # the same images through another reader (the folder): every one is a content duplicate
    folder = run_build(tmp_path, gallery / "images", encoder)
    assert folder["added"] == 0 and folder["duplicates"] == 40 and folder["count"] == 40


def test_duplicates_and_corrupt_images_are_counted_not_fatal(tmp_path, gallery, encoder):
    src = tmp_path / "src"
    shutil.copytree(gallery / "images", src)
    shutil.copy(src / "00001.jpg", src / "copy_of_1.jpg")
    (src / "broken.jpg").write_bytes((src / "00002.jpg").read_bytes()[:200])
    (src / "empty.png").write_bytes(b"")
    (src / "notes.jpg").write_text("not an image")
    r = run_build(tmp_path / "idx", src, encoder)
    assert r["count"] == 40 and r["duplicates"] == 1 and r["unreadable"] == 3
    assert any("broken.jpg" in e for e in r["unreadable_examples"])


def test_model_mismatch_is_refused(tmp_path, gallery, encoder, tiny_dirs):
    run_build(tmp_path, gallery / "captions.csv", encoder)
    other = load_dual_encoder(spec_for("open_clip_siglip", tiny_dirs["open_clip_siglip"]))
    idx = ImageTextIndex.open(tmp_path, "g")
    with pytest.raises(IndexModelMismatch, match="fingerprint"):
        Searcher(idx, other)
    s = Searcher(idx, encoder)
    with pytest.raises(IndexModelMismatch, match="16 dimensions; index 'g' holds 32"):
        s.by_embedding(np.ones(16))
    with pytest.raises(IndexModelMismatch, match="fingerprint"):
        s.by_embedding(np.ones(32), fingerprint="0123456789abcdef")
    with pytest.raises(InvalidInput, match="all zeros"):
        s.by_embedding(np.zeros(32))
    with pytest.raises(IndexModelMismatch):  # building into it with another model is refused too
        run_build(tmp_path, gallery / "images", other)
    idx.close()


def test_add_and_remove_round_trip(tmp_path, gallery, encoder):
    run_build(tmp_path, gallery / "captions.csv", encoder)
    idx = ImageTextIndex.open(tmp_path, "g")
    s = Searcher(idx, encoder)
    img = (gallery / "images" / "00007.jpg").read_bytes()
    hit = s.by_image([img], k=1)[0].hits[0]
    assert hit.source.endswith("00007.jpg") and hit.score == pytest.approx(1, abs=1e-4)
    assert idx.remove([hit.id]) == 1
    assert idx.manifest.count == 39 and idx.meta.count() == 39 and idx.images.ntotal == 39
    assert all(h.id != hit.id for h in s.by_image([img], k=39)[0].hits)
    assert all(h.item_id != hit.id for h in s.by_image([img], k=50, target="texts")[0].hits)
    idx.close()
    reopened = ImageTextIndex.open(tmp_path, "g")  # the deletion was saved
    assert reopened.manifest.count == 39 and reopened.images.ntotal == 39
    reopened.close()
    r = run_build(tmp_path, gallery / "images" / "00007.jpg", encoder)  # add it back
    assert r["added"] == 1 and r["count"] == 40
    idx = ImageTextIndex.open(tmp_path, "g")
    assert Searcher(idx, encoder).by_image([img], k=1)[0].hits[0].id == hit.id
    idx.close()


def test_pagination_filters_and_image_to_text(tmp_path, gallery, encoder):
    run_build(tmp_path, gallery / "captions.csv", encoder)
    idx = ImageTextIndex.open(tmp_path, "g")
    s = Searcher(idx, encoder)
    full = s.by_text(["a red star"], k=20)[0]
    p1, p2 = s.by_text(["a red star"], k=10)[0], s.by_text(["a red star"], k=10, offset=10)[0]
    assert [h.id for h in p1.hits + p2.hits] == [h.id for h in full.hits]
    assert [h.rank for h in p2.hits] == list(range(11, 21)) and p1.next_offset == 10
    last = s.by_text(["a red star"], k=10, offset=35)[0]
    assert len(last.hits) == 5 and last.next_offset is None
    red = s.by_text(["a star"], k=40, where=["colour=red"])[0]
    assert red.hits and all(h.meta["colour"] == "red" for h in red.hits)
    assert len(red.hits) == len(idx.meta.select([("colour", "=", "red")]))
    texts = s.by_image([(gallery / "images" / "00003.jpg").read_bytes()], k=5, target="texts")[0]
    assert texts.hits and all(h.item_id is not None and h.caption for h in texts.hits)
    for bad, match in [({"k": 0}, "k must be"), ({"k": 10_001}, "k must be"), ({"offset": -1}, "offset"),
                       ({"dimensions": 33}, "dimensions"), ({"where": ["nonsense"]}, "filter"),
                       ({"target": "videos"}, "target")]:
        with pytest.raises(InvalidInput, match=match):
            s.by_text(["x"], **bad)
    idx.close()


def test_funnel_index_from_a_declared_matryoshka_model(tmp_path, gallery, tiny_dirs, backend):
    model_dir = tmp_path / "mrl"
    shutil.copytree(tiny_dirs["open_clip_clip"], model_dir)
    cfg = json.loads((model_dir / "open_clip_config.json").read_text())
    cfg["vlserve"] = {"matryoshka_dims": [8, 16, 32]}
    (model_dir / "open_clip_config.json").write_text(json.dumps(cfg))
    enc = load_dual_encoder(f"open_clip:local-dir:{model_dir}")
    if backend == "milvus-server":  # the test server is Milvus 2.3: one vector field per collection
        with pytest.raises(InvalidInput, match=r"one vector field per collection.*--coarse-dims none"):
            run_build(tmp_path / "idx", gallery / "captions.csv", enc, factory="HNSW32,Flat")
        return
    r = run_build(tmp_path / "idx", gallery / "captions.csv", enc, factory="HNSW32,Flat")
    m = IndexManifest.load(tmp_path / "idx" / "g")
    assert r["coarse_dims"] == 8 and m.funnel and m.matryoshka_dims == [8, 16, 32] and m.factory == "HNSW32,Flat"
    idx = ImageTextIndex.open(tmp_path / "idx", "g")
    q = enc.encode_texts(["a blue circle"])
    got = Searcher(idx).by_embedding(q, k=5)[0]
    vecs = idx.images.vectors(idx.images.ids())
    truth = idx.images.ids()[np.argsort(-(vecs @ q[0]))[:5]]
    assert [h.id for h in got.hits] == truth.tolist()  # shortlist >= index size: exact
    idx.close()
    assert choose_coarse_dims("auto", 512, [64, 128, 256, 512]) == 64
    assert choose_coarse_dims("auto", 512, None) == 512 and choose_coarse_dims("none", 128, [16]) == 128


def test_crash_between_database_and_vector_store_is_repaired(tmp_path, gallery, encoder, backend):
    run_build(tmp_path, gallery / "captions.csv", encoder)
    folder = tmp_path / "g"
    saved = (folder / "images.full.faiss").read_bytes() if backend == "faiss" else b""
    idx = ImageTextIndex.open(tmp_path, "g")
    victim = int(idx.images.ids()[0])
    idx.meta.delete([victim])  # the database commit happened, the vector store's did not
    idx.close()
    if backend == "faiss":
        (folder / "images.full.faiss").write_bytes(saved)
    idx = ImageTextIndex.open(tmp_path, "g")
    assert idx.images.ntotal == 40 and idx.meta.count() == 39
    hits = Searcher(idx).by_embedding(idx.images.vectors(np.array([victim])), k=3)[0].hits
    assert victim not in [h.id for h in hits]  # a vector without metadata is never an answer
    assert idx.reconcile()["stale_vectors"] == 1 and idx.images.ntotal == 39
    idx.close()


def test_open_missing_index_names_what_exists(tmp_path, gallery, encoder):
    run_build(tmp_path, gallery / "captions.csv", encoder)
    with pytest.raises(NotFound, match=r"index 'nope' not found.*indexes: g"):
        ImageTextIndex.open(tmp_path, "nope")
    with pytest.raises(InvalidInput, match="invalid index name"):
        ImageTextIndex.open(tmp_path, "../etc")


def test_both_backends_answer_the_same_hits(tmp_path, gallery, encoder, backend):
    """The same gallery in FAISS and in Milvus: the same ids and scores (exact indexes, 1e-5), with
    Matryoshka dimensions, filters, pagination and image -> text."""
    if backend == "faiss":
        pytest.skip("compares FAISS with each Milvus deployment")
    for name, store in (("f", "faiss"), ("m", "milvus")):
        run_build(tmp_path, gallery / "captions.csv", encoder, name=name, backend=store,
                  **({"uri": None} if store == "faiss" else {}))
    f, m = ImageTextIndex.open(tmp_path, "f"), ImageTextIndex.open(tmp_path, "m")
    assert (f.manifest.backend, m.manifest.backend) == ("faiss", "milvus")
    sf, sm = Searcher(f, encoder), Searcher(m, encoder)
    queries = ["a red star", "two shapes", "a hand-drawn blue circle"]
    for kw in ({"k": 10}, {"k": 7, "offset": 3}, {"k": 10, "dimensions": 16}, {"k": 40, "where": ["colour=red"]},
               {"k": 5, "target": "texts"}):
        for a, b in zip(sf.by_text(queries, **kw), sm.by_text(queries, **kw), strict=True):
            sa, sb = np.array([h.score for h in a.hits]), np.array([h.score for h in b.hits])
            assert len(sa) == len(sb) and np.abs(sa - sb).max() <= 1e-5, kw
            # equal scores (the same caption text twice) may come in either order; all others in one order
            tied = np.zeros(len(sa), bool)
            tied[1:] |= np.abs(np.diff(sa)) <= 1e-5
            tied[:-1] |= np.abs(np.diff(sa)) <= 1e-5
            assert [h.id for h, t in zip(a.hits, tied, strict=True) if not t] == \
                [h.id for h, t in zip(b.hits, tied, strict=True) if not t], kw
    assert f.images.ntotal == m.images.ntotal == 40 and f.texts.ntotal == m.texts.ntotal
    f.close()
    m.close()
