"""The on-disk fp16 rerank store (``rerank_store="disk-fp16"``): the store's own operations and crash
rules, the same hits as the in-RAM store through ``VectorCollection`` and ``vlserve index``, and
``vlserve index compact`` for the deleted vectors HNSW keeps."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import spec_for
from PIL import Image
from test_index_funnel import matryoshka_vectors, one_faiss_thread  # noqa: F401  (the autouse fixture applies here too)
from typer.testing import CliRunner

from vlserve.cli.index import index_app
from vlserve.errors import InvalidInput
from vlserve.retrieval.collection import VectorCollection
from vlserve.retrieval.disk_store import DiskStore
from vlserve.retrieval.store import ImageTextIndex

FP16_ATOL = 2e-3  # cosine error of fp16 rows of unit vectors (measured ~3e-4 at 512 dims)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return matryoshka_vectors(3000), matryoshka_vectors(40, seed=1)


IDS = np.arange(3000, dtype=np.int64) * 5 + 2  # ids need not be positions


def make(x, factory, coarse, store, folder=None) -> VectorCollection:
    col = VectorCollection("images", x.shape[1], coarse, rerank_store=store, folder=folder)
    col.build(factory, x)
    col.add(IDS[:len(x)], x)
    return col


# ---- the store ---------------------------------------------------------------------------------------
def test_store_add_is_idempotent_lookup_is_fp16_and_remove_tombstones(tmp_path, data):
    x, _ = data
    s = DiskStore.open(tmp_path, "images", 128)
    assert s.ntotal == 0 and not s.has(np.array([2])).any()
    batch = np.array([7, 3, 7, 9])  # a repeated id in one batch: the first row wins
    assert s.add(batch, x[:4]) == 3 and s.ntotal == 3
    assert s.add(np.array([3, 9, 11]), x[4:7]) == 1  # present ids are skipped
    np.testing.assert_array_equal(s.ids(), [3, 7, 9, 11])
    np.testing.assert_array_equal(s.has(np.array([3, 4, 11, 12])), [True, False, True, False])
    got = s.vectors(np.array([11, 7, 3]))
    assert got.dtype == np.float32 and got.shape == (3, 128)
    np.testing.assert_allclose(got, x[[6, 0, 1]], atol=1e-3)
    np.testing.assert_array_equal(got, x[[6, 0, 1]].astype(np.float16).astype(np.float32))
    assert s.remove(np.array([7, 7, 100])) == 1 and s.ntotal == 3 and s.dead_rows == 1
    with pytest.raises(KeyError):
        s.vectors(np.array([7]))
    assert s.add(np.array([7]), x[10:11]) == 1  # a deleted id comes back as a new row
    np.testing.assert_array_equal(s.vectors(np.array([7]))[0], x[10].astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(s.insertion_ids(), [3, 9, 11, 7])
    ids, vecs = s.all_vectors()
    np.testing.assert_array_equal(ids, [3, 9, 11, 7])
    np.testing.assert_array_equal(vecs, s.vectors(ids))


def test_store_save_reopen_and_a_crash_before_save_keeps_the_last_commit(tmp_path, data):
    x, _ = data
    s = DiskStore.open(tmp_path, "images", 128)
    s.add(IDS[:100], x[:100])
    s.remove(IDS[:10])
    s.save()
    s.add(IDS[100:150], x[100:150])  # appended to the files, never committed: a crash here
    s.close()
    back = DiskStore.open(tmp_path, "images", 128)
    assert back.ntotal == 90 and back.dead_rows == 10
    np.testing.assert_array_equal(back.ids(), IDS[10:100])
    with (tmp_path / "images.rerank.f16").open("ab") as f:
        f.write(b"\x01" * 300)  # and a torn write after it
    assert back.add(IDS[120:130], x[120:130]) == 10  # the uncommitted tail is cut off before appending
    assert (tmp_path / "images.rerank.f16").stat().st_size == 110 * 128 * 2
    assert (tmp_path / "images.rerank.ids").stat().st_size == 110 * 8
    np.testing.assert_allclose(back.vectors(IDS[120:130]), x[120:130], atol=1e-3)
    np.testing.assert_allclose(back.vectors(IDS[50:60]), x[50:60], atol=1e-3)
    back.save()
    again = DiskStore.open(tmp_path, "images", 128)
    assert again.ntotal == 100 and not list(tmp_path.glob(".*.tmp"))
    np.testing.assert_array_equal(again.vectors(IDS[120:130]), back.vectors(IDS[120:130]))


def test_store_refuses_files_shorter_than_its_head_and_a_wrong_dim(tmp_path, data):
    x, _ = data
    s = DiskStore.open(tmp_path, "images", 128)
    s.add(IDS[:20], x[:20])
    s.save()
    with pytest.raises(InvalidInput, match="128-d rows"):
        DiskStore.open(tmp_path, "images", 64)
    with (tmp_path / "images.rerank.f16").open("r+b") as f:
        f.truncate(10 * 128 * 2)
    with pytest.raises(InvalidInput, match="short of its head"):
        DiskStore.open(tmp_path, "images", 128)


# ---- through VectorCollection -----------------------------------------------------------------------------
@pytest.mark.parametrize("factory,coarse", [("Flat", 16), ("Flat", 128), ("HNSW32,Flat", 16), ("IVF32,Flat", 32)])
def test_disk_store_gives_the_ram_stores_hits(tmp_path, data, factory, coarse):
    x, q = data
    ram = make(x, factory, coarse, "ram")
    disk = make(x, factory, coarse, "disk-fp16", tmp_path)
    assert disk.separate_search and disk.ntotal == ram.ntotal == 3000
    (s_ram, i_ram), (s_disk, i_disk) = ram.search(q, 10), disk.search(q, 10)
    np.testing.assert_allclose(s_disk, s_ram, atol=FP16_ATOL)
    same = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(i_ram, i_disk, strict=True)])
    assert same >= 0.98, same  # only near-ties may swap under fp16
    s64, _ = disk.search(q[:5], 5, dimensions=64)  # Matryoshka rescoring reads the same rows
    np.testing.assert_allclose(s64, ram.search(q[:5], 5, dimensions=64)[0], atol=FP16_ATOL)
    _, sub = disk.search_subset(q[:5], IDS[100:300], 5)
    np.testing.assert_array_equal(sub, ram.search_subset(q[:5], IDS[100:300], 5)[1])


def test_disk_collection_save_load_remove_and_reopen(tmp_path, data):
    x, q = data
    col = make(x, "HNSW32,Flat", 16, "disk-fp16", tmp_path)
    col.save(tmp_path)
    assert not (tmp_path / "images.full.faiss").exists()
    back = VectorCollection.load(tmp_path, "images", 128, 16, "HNSW32,Flat", col.search_params, "disk-fp16")
    assert back.ntotal == 3000 and back.rerank_store == "disk-fp16"
    np.testing.assert_array_equal(back.search(q, 10)[1], col.search(q, 10)[1])
    assert back.add(IDS[:3000], x) == 0
    gone = back.search(q[:2], 3)[1].ravel()
    assert back.remove(gone) == len(set(gone.tolist())) and back.dead == len(set(gone.tolist()))
    back.save(tmp_path)
    again = VectorCollection.load(tmp_path, "images", 128, 16, "HNSW32,Flat", col.search_params, "disk-fp16")
    assert again.ntotal == 3000 - len(set(gone.tolist())) and not again.has(gone).any()
    assert not set(gone.tolist()) & set(again.search(q[:2], 10)[1].ravel().tolist())
    (tmp_path / "images.faiss").unlink()  # a crash between the two saves: rebuilt from the disk store
    rebuilt = VectorCollection.load(tmp_path, "images", 128, 16, "HNSW32,Flat", col.search_params, "disk-fp16")
    assert rebuilt.search_index.ntotal == rebuilt.ntotal and rebuilt.dead == 0
    with pytest.raises(AttributeError, match="disk-fp16"):
        _ = rebuilt.full


def test_unknown_rerank_store_is_refused(tmp_path):
    with pytest.raises(InvalidInput, match="rerank store must be one of"):
        VectorCollection("images", 8, 8, rerank_store="mmap")
    with pytest.raises(InvalidInput, match="needs the index folder"):
        VectorCollection("images", 8, 8, rerank_store="disk-fp16")


@pytest.mark.parametrize("store", ["ram", "disk-fp16"])
def test_compaction_drops_dead_hnsw_vectors_and_keeps_the_hits(tmp_path, data, store):
    x, q = data
    col = make(x[:2000], "HNSW32,Flat", 16, store, tmp_path)
    gone = col.search(q, 2)[1].ravel()
    col.remove(gone)
    dead = len(set(gone.tolist()))
    assert col.dead == dead and col.search_index.ntotal == 2000
    before = col.search(q, 10, shortlist=500)  # over-fetches by the dead count; after compaction it need not
    col.rebuild_search()
    assert col.dead == 0 and col.search_index.ntotal == 2000 - dead
    after = col.search(q, 10, shortlist=500)
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_allclose(after[0], before[0], atol=1e-6)


# ---- through ``vlserve index`` ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(24):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / f"{i:02d}.png")
    return root


def cli(*args: str) -> dict:
    r = CliRunner().invoke(index_app, list(args))
    assert r.exit_code == 0, (r.output, r.exception)
    return json.loads(r.output)


def test_index_build_with_the_disk_store_then_remove_and_compact(tmp_path, images, tiny_dirs):
    spec = spec_for("open_clip_clip", tiny_dirs["open_clip_clip"])
    at = ["--index-dir", str(tmp_path)]
    for name, store in (("ram", []), ("disk", ["--rerank-store", "disk-fp16"])):
        cli("build", str(images), "--model", spec, "--name", name, "--no-progress", "--workers", "0",
            "--factory", "HNSW32,Flat", "--no-captions", *store, *at)
    info = cli("info", "disk", *at)
    assert info["rerank_store"] == "disk-fp16" and "images.rerank.f16" in info["files"]
    assert "images.full.faiss" not in info["files"] and info["count"] == 24
    assert cli("info", "ram", *at)["rerank_store"] == "ram"

    def hits(name: str) -> list[int]:
        page = cli("search", name, "--like-id", str(first), "-k", "8", *at)["results"][0]
        return [h["id"] for h in page["hits"]]

    first = int(ImageTextIndex.open(tmp_path, "disk").images.ids()[0])
    assert hits("disk") == hits("ram")
    victims = hits("disk")[1:4]
    for name in ("ram", "disk"):
        removed = cli("remove", name, *[a for v in victims for a in ("--id", str(v))], *at)
        assert removed["removed"] == 3 and removed["count"] == 21
        assert cli("info", name, *at)["deleted_pending_compaction"] == 3
        before = hits(name)
        report = cli("compact", name, *at)
        assert report["dead_before"]["images"] == 3 and report["dead_after"]["images"] == 0
        assert report["count"] == 21 and report["seconds"] >= 0
        assert cli("info", name, *at)["deleted_pending_compaction"] == 0
        assert hits(name) == before and not set(victims) & set(before)
    assert hits("disk") == hits("ram")
    r = CliRunner().invoke(index_app, ["build", str(images), "--name", "disk", "--rerank-store", "ram",
                                       "--no-progress", "--workers", "0", *at])
    assert isinstance(r.exception, InvalidInput) and "cannot change" in r.exception.message


def test_crash_between_database_and_disk_store_is_repaired(tmp_path, images, tiny_dirs):
    spec = spec_for("open_clip_clip", tiny_dirs["open_clip_clip"])
    cli("build", str(images), "--model", spec, "--name", "g", "--no-progress", "--workers", "0",
        "--rerank-store", "disk-fp16", "--index-dir", str(tmp_path))
    head = tmp_path / "g" / "images.rerank.npz"
    saved = head.read_bytes()
    idx = ImageTextIndex.open(tmp_path, "g")
    victim = int(idx.images.ids()[0])
    idx.remove([victim])  # database and store both committed...
    idx.close()
    head.write_bytes(saved)  # ...then roll the store's head back: the crash came before its commit
    idx = ImageTextIndex.open(tmp_path, "g")
    assert idx.images.ntotal == 24 and idx.meta.count() == 23
    assert idx.reconcile()["stale_vectors"] == 1 and idx.images.ntotal == 23
    idx.close()
    assert ImageTextIndex.open(tmp_path, "g").images.ntotal == 23
