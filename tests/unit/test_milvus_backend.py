"""The Milvus backend's own contract on Milvus Lite (the real engine, in-process): FAISS factory
strings mapped to Milvus indexes; an unreachable server is a clear error within seconds; a collection
of another dimension, or one that was dropped, is refused by name; the funnel's shortlist + exact
rerank equals an exact scan when the shortlist covers the collection. The shared index behaviour on
both backends is tests/unit/test_index_store.py."""

from __future__ import annotations

import time

import numpy as np
import pytest

from vlserve.errors import InvalidInput, ModelUnavailable

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from vlserve.retrieval.milvus_collection import MilvusCollection, collection_name, milvus_index


def unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_factory_strings_map_to_milvus_indexes():
    assert milvus_index("Flat", lite=True)[0]["index_type"] == "FLAT"
    index, search = milvus_index("HNSW32,Flat", lite=True)
    assert index == {"index_type": "HNSW", "params": {"M": 32, "efConstruction": 200}} and search == {"ef": 128}
    assert milvus_index("IVF1024,Flat", lite=True)[0] == {"index_type": "IVF_FLAT", "params": {"nlist": 1024}}
    assert milvus_index("IVF4096,PQ64np", lite=False)[0]["index_type"] == "IVF_PQ"
    with pytest.raises(InvalidInput, match="Milvus Lite has no IVF_PQ"):
        milvus_index("IVF4096,PQ64np", lite=True)
    with pytest.raises(InvalidInput, match="no Milvus counterpart"):
        milvus_index("OPQ16,IVF64,PQ16", lite=True)
    assert collection_name("my-index.v2", "images") == "vlserve_my_index_v2_images"


def test_an_unreachable_server_is_a_clear_error_within_seconds():
    t0 = time.monotonic()
    with pytest.raises(ModelUnavailable, match=r"Milvus at http://127\.0\.0\.1:9 "):
        MilvusCollection("images", 8, 8, None, "", "http://127.0.0.1:9", "x")
    assert time.monotonic() - t0 < 10


def test_funnel_rerank_equals_an_exact_scan_and_deletes_are_in_place(tmp_path):
    x = unit(300, 32)
    col = MilvusCollection("images", 32, 8, None, "", str(tmp_path / "m.db"), "c")
    col.build("HNSW16", x[:0])
    assert col.add(np.arange(300), x) == 300 and col.add(np.arange(300), x) == 0  # idempotent
    q = unit(4, 32, seed=1)
    scores, ids = col.search(q, 10, shortlist=300)
    exact = np.argsort(-(x @ q.T), axis=0)[:10].T
    assert (ids == exact).all() and np.allclose(scores, np.take_along_axis(x @ q.T, exact.T, 0).T, atol=1e-5)
    assert col.remove(np.array([int(ids[0, 0]), 10_000])) == 1 and col.ntotal == 299 and col.dead == 0
    assert int(ids[0, 0]) not in col.search(q[:1], 10, shortlist=300)[1][0]
    got_ids, got = col.all_vectors()
    assert len(got_ids) == 299 and np.allclose(got[np.argsort(got_ids)], np.delete(x, ids[0, 0], 0), atol=1e-6)


def test_another_dimension_or_a_dropped_collection_is_refused(tmp_path):
    uri = str(tmp_path / "m.db")
    col = MilvusCollection("images", 16, 16, None, "", uri, "shared")
    col.build("Flat", unit(0, 16))
    col.add(np.arange(5), unit(5, 16))
    with pytest.raises(InvalidInput, match=r"'shared' at .* holds 16-dim full vectors; this index needs 32"):
        MilvusCollection("images", 32, 32, "Flat", "", uri, "shared")
    with pytest.raises(InvalidInput, match="no coarse vector field"):
        MilvusCollection("images", 16, 8, "Flat", "", uri, "shared")
    col.drop()
    with pytest.raises(InvalidInput, match="has no collection 'shared': was it dropped"):
        MilvusCollection("images", 16, 16, "Flat", "", uri, "shared")
