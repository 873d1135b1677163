"""The Milvus backend's own contract on Milvus Lite (the real engine, in-process): FAISS factory
strings mapped to Milvus indexes; an unreachable server or a wrong token is a clear error within
seconds; a collection of another dimension or model, another index's, or one that was dropped, is
refused by name; the funnel's shortlist + exact rerank equals an exact scan when the shortlist covers
the collection; filters run inside Milvus with the metadata store's semantics; IVF_PQ on a server.
The server tests run a real Milvus standalone server (the ``milvus`` package) with authentication.
The shared index behaviour on every backend is tests/unit/test_index_store.py."""

from __future__ import annotations

import time

import numpy as np
import pytest

from vlserve.errors import IndexModelMismatch, InvalidInput, ModelUnavailable

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from vlserve.retrieval.milvus_collection import MilvusCollection
from vlserve.retrieval.milvus_schema import collection_name, milvus_index


def unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_factory_strings_map_to_milvus_indexes():
    assert milvus_index("Flat", lite=True)[0]["index_type"] == "FLAT"
    index, search = milvus_index("HNSW32,Flat", lite=True)
    assert index == {"index_type": "HNSW", "params": {"M": 32, "efConstruction": 200}} and search == {"ef": 128}
    assert milvus_index("IVF1024,Flat", lite=True)[0] == {"index_type": "IVF_FLAT", "params": {"nlist": 1024}}
    assert milvus_index("IVF4096,PQ64np", lite=False)[0]["index_type"] == "IVF_PQ"
    assert milvus_index("IVF16384,SQ8", lite=True)[0] == {"index_type": "IVF_SQ8", "params": {"nlist": 16384}}
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


def _meta(i: int) -> dict:
    m = {"colour": ["red", "blue", "green"][i % 3], "size": i % 7}
    if i % 5 == 0:
        m.pop("colour")  # some items lack a key: like SQL's NULL, no comparison matches it
    return m


FILTER_CASES = [
    ([("colour", "=", "red")], lambda i, m: m.get("colour") == "red"),
    ([("colour", "!=", "red")], lambda i, m: "colour" in m and m["colour"] != "red"),
    ([("size", ">=", 4), ("colour", "=", "blue")], lambda i, m: m["size"] >= 4 and m.get("colour") == "blue"),
    ([("size", "<", 2)], lambda i, m: m["size"] < 2),
    ([("source", "=", "img/7.jpg")], lambda i, m: i == 7),
    ([("id", ">", 100)], lambda i, m: i > 100),
]


@pytest.mark.parametrize("deployment", ["lite", "server"])
def test_filters_run_inside_milvus_with_the_metadata_store_semantics(tmp_path, request, deployment):
    """The rows carry source/caption/meta; ``search_where`` filters inside Milvus and returns exactly
    the top-k of the matching rows (checked against numpy over the same vectors), at full size and
    at a Matryoshka prefix; a field only the metadata database has is handed back (None)."""
    uri, token = (str(tmp_path / "m.db"), "") if deployment == "lite" else request.getfixturevalue("milvus_server")
    x = unit(150, 16, seed=3)
    fields = lambda ids: [{"source": f"img/{i}.jpg", "caption": f"item {i}", "meta": _meta(i)} for i in ids]  # noqa: E731
    col = MilvusCollection("images", 16, 16, None, "", uri, f"filters_{deployment}", token, fields=fields)
    col.build("Flat", x[:0])
    col.add(np.arange(150), x)
    q = unit(2, 16, seed=4)
    for filters, keep in FILTER_CASES:
        allowed = np.array([i for i in range(150) if keep(i, _meta(i))])
        for dims in (None, 8):
            got = col.search_where(q, filters, 10, dims)
            assert got is not None
            scores, ids = got
            qd = q[:, :dims] / np.linalg.norm(q[:, :dims], axis=1, keepdims=True) if dims else q
            xd = x[allowed, :dims] / np.linalg.norm(x[allowed, :dims], axis=1, keepdims=True) if dims else x[allowed]
            sims = xd @ qd.T
            n = min(10, len(allowed))
            assert (ids[:, :n] == allowed[np.argsort(-sims, axis=0)[:n].T]).all() and (ids[:, n:] == -1).all(), \
                (filters, dims)
            assert np.allclose(scores[:, :n], np.sort(sims, axis=0)[::-1][:n].T, atol=1e-5)
    assert col.search_where(q, [("content_hash", "=", "ab")], 10) is None
    assert col.search_where(q, [("id", "=", 3)], 10, texts=True) is None  # a caption row's id is not the item's
    empty_s, empty_i = col.search_where(q, [("colour", "=", "purple")], 10)
    assert (empty_i == -1).all() and np.isinf(empty_s).all()
    col.drop()


def test_a_wrong_token_is_a_clear_error(milvus_server):
    uri, _ = milvus_server
    t0 = time.monotonic()
    with pytest.raises(ModelUnavailable, match=r"refused the connection .*check the token \(VLSERVE_MILVUS_TOKEN"):
        MilvusCollection("images", 8, 8, None, "", uri, "x", token="root:not-the-password")
    assert time.monotonic() - t0 < 10


def test_the_manifest_binding_travels_with_the_collection(tmp_path):
    """A process whose manifest binds another model, or another index of the same name, is refused by
    the collection itself; a build never drops such a collection."""
    uri = str(tmp_path / "m.db")
    mine = {"index": "g", "model": "toy", "fingerprint": "f1", "dim": 16, "created_at": "2026-01-01T00:00:00+00:00"}
    col = MilvusCollection("images", 16, 16, None, "", uri, "bound", binding=mine)
    col.build("Flat", unit(0, 16))
    col.add(np.arange(5), unit(5, 16))
    assert col._properties()["fingerprint"] == "f1"
    MilvusCollection("images", 16, 16, "Flat", "", uri, "bound", binding=mine)  # the same index: fine
    with pytest.raises(IndexModelMismatch, match=r"holds embeddings of model 'toy' \(fingerprint f1\); .* 'other'"):
        MilvusCollection("images", 16, 16, "Flat", "", uri, "bound", binding={**mine, "model": "other",
                                                                             "fingerprint": "f2"})
    twin = MilvusCollection("images", 16, 16, None, "", uri, "bound", binding={**mine, "created_at": "2026-02-02"})
    with pytest.raises(InvalidInput, match="belongs to another index named 'g'"):
        twin.build("Flat", unit(0, 16))
    assert col.ntotal == 5  # nothing was dropped


def test_ivf_pq_runs_on_a_milvus_server(milvus_server, tmp_path):
    """IVF_PQ, which Milvus Lite lacks, on the real server: the factory maps and searches find the
    query's own vector first."""
    uri, token = milvus_server
    x = unit(2000, 32, seed=5)
    col = MilvusCollection("images", 32, 32, None, "", uri, "pq", token)
    col.build("IVF16,PQ8np", x[:0])
    col.add(np.arange(2000), x)
    col.save(tmp_path)  # a flush: the server builds the IVF_PQ index over sealed segments
    _, ids = col.search(x[:5], 5)
    assert (ids[:, 0] == np.arange(5)).all()
    col.drop()


@pytest.mark.parametrize("deployment", ["lite", "server"])
def test_filters_inside_milvus_match_the_metadata_database(tmp_path, request, monkeypatch, deployment):
    """The same items in the metadata database (SQLite) and in a Milvus collection: every filter selects
    the same items both ways: captions missing (NULL) or given, booleans, numbers, non-ASCII text,
    sources; a filter Milvus cannot express (null, NaN) is handed back to the database. Also with the
    broad-filter path (the funnel under the filter) forced on."""
    from vlserve.retrieval import milvus_collection as mc
    from vlserve.retrieval.metadata import MetadataStore, NewItem, item_fields, parse_filters

    uri, token = (str(tmp_path / "m.db"), "") if deployment == "lite" else request.getfixturevalue("milvus_server")
    store = MetadataStore(tmp_path / "meta")
    colours = ["red", "café", "字", "😀 blue"]
    items = [NewItem(i, f"h{i}", f"img/{i}.jpg", [f"a shape {i}"] if i % 4 else [],
                     {"colour": colours[i % 4], "size": i % 7, "big": i % 3 == 0, **({"w": 1.5} if i % 2 else {})})
             for i in range(1, 121)]
    with store.transaction() as con:
        store.insert(con, items, None)
    x = unit(121, 16, seed=6)
    coarse = 8 if deployment == "lite" else 16  # the test server (2.3) keeps one vector field
    dedicated = MilvusCollection("images", 16, coarse, None, "", uri, f"sqlite_{deployment}", token,
                                 fields=lambda ids: item_fields(store, ids))
    dedicated.build("Flat", x[:0])
    dedicated.add(np.arange(1, 121), x[1:])
    q = unit(1, 16, seed=7)
    cases = [["colour=café"], ["colour=字"], ["colour=😀 blue"], ["colour!=red"], ["caption=a shape 5"],
             ["caption!=a shape 5"], ["caption<a shape 3"], ["big=true"], ["big=false", "size>=3"], ["w=1.5"],
             ["w!=1.5"], ["source=img/7.jpg"], ["size<2", "colour=字"], ["id<=10"]]
    for broad in (False, True):
        if broad:  # every filter through the funnel branch (shortlist on coarse under the filter)
            monkeypatch.setattr(mc, "EXACT_SUBSET_MAX", 0)
        for where in cases:
            filters = parse_filters(where)
            want = set(store.select(filters).tolist())
            got = dedicated.search_where(q, filters, 120, shortlist=120)
            assert got is not None, where
            assert set(got[1][0][got[1][0] >= 0].tolist()) == want, (where, broad)
    for where in (["colour=null"], ["size=NaN"]):
        assert dedicated.search_where(q, parse_filters(where), 10) is None
    dedicated.drop()
    store.close()
