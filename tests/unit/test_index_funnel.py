"""Funnel search, the factory rule and the vector collection, on Matryoshka-structured vectors."""

from __future__ import annotations

import numpy as np
import pytest

from vlserve.errors import InvalidInput
from vlserve.retrieval import factory as fx
from vlserve.retrieval.collection import VectorCollection
from vlserve.retrieval.funnel import shortlist_size


def matryoshka_vectors(n: int, d: int = 128, seed: int = 0, clusters: int = 50) -> np.ndarray:
    """Clustered Gaussian data whose variance is concentrated in the leading dims (like an MRL model)."""
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.arange(1, d + 1) ** 0.6
    centres = rng.standard_normal((clusters, d)) * scale
    x = centres[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, d)) * scale
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact_topk(db: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(q @ db.T), axis=1, kind="stable")[:, :k]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


@pytest.fixture(autouse=True, scope="module")
def one_faiss_thread():
    """FAISS's OpenMP k-means is ~10x slower with 2 threads than 1 on a loaded 2-core machine."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    x = matryoshka_vectors(6000)
    q = matryoshka_vectors(50, seed=1)
    return x, q


def make(factory: str, x: np.ndarray, coarse: int) -> VectorCollection:
    col = VectorCollection("images", x.shape[1], coarse)
    col.build(factory, x)
    col.add(np.arange(len(x)) * 3 + 1, x)  # ids need not be positions
    return col


@pytest.mark.parametrize("factory", ["Flat", "HNSW32,Flat", "IVF64,Flat", "IVF64,PQ8np"])
def test_funnel_16_to_128_matches_exact_recall(data, factory):
    x, q = data
    col = make(factory, x, coarse=16)
    _, ids = col.search(q, 10, shortlist=300)
    truth = exact_topk(x, q, 10) * 3 + 1
    assert recall(ids, truth) >= 0.95, factory


def test_scores_are_full_dimension_cosines_and_dimensions_rescore(data):
    x, q = data
    col = make("Flat", x, coarse=32)
    scores, ids = col.search(q[:3], 5)
    pos = (ids - 1) // 3
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", q[:3], x[pos]), atol=1e-5)
    s64, i64 = col.search(q[:3], 5, dimensions=64)
    from vlserve.matryoshka import truncate

    np.testing.assert_allclose(s64, np.einsum("qd,qkd->qk", truncate(q[:3], 64), truncate(x[(i64 - 1) // 3], 64)),
                               atol=1e-5)


def test_add_is_idempotent_and_remove_works_even_for_hnsw(data):
    x, q = data
    col = make("HNSW32,Flat", x[:500], coarse=16)
    assert col.add(np.arange(500) * 3 + 1, x[:500]) == 0  # same ids again: nothing added
    assert col.ntotal == 500
    _, ids = col.search(q[:1], 3)
    gone = ids[0][:2]
    assert col.remove(gone) == 2 and col.ntotal == 498 and col.dead == 2  # HNSW keeps them, they are filtered
    _, after = col.search(q[:1], 10)
    assert not set(gone) & set(after[0].tolist()) and (after[0] >= 0).all()


def test_save_load_round_trip(tmp_path, data):
    x, q = data
    col = make("IVF64,Flat", x, coarse=32)
    col.save(tmp_path)
    back = VectorCollection.load(tmp_path, "images", 128, 32, "IVF64,Flat", col.search_params)
    assert back.ntotal == col.ntotal
    a, b = col.search(q, 10), back.search(q, 10)
    np.testing.assert_array_equal(a[1], b[1])
    assert not list(tmp_path.glob(".*.tmp"))


def test_missing_search_file_is_rebuilt_from_the_exact_store(tmp_path, data):
    x, q = data
    col = make("HNSW32,Flat", x[:800], coarse=16)
    col.save(tmp_path)
    (tmp_path / "images.faiss").unlink()  # e.g. a crash between the two saves
    back = VectorCollection.load(tmp_path, "images", 128, 16, "HNSW32,Flat", "efSearch=128")
    assert back.search_index.ntotal == 800
    np.testing.assert_array_equal(back.search(q, 5)[1], col.search(q, 5)[1])


def test_subset_search_is_exact(data):
    x, q = data
    col = make("HNSW32,Flat", x, coarse=16)
    subset = np.arange(100, 200) * 3 + 1
    _, ids = col.search_subset(q, subset, 5)
    truth = (exact_topk(x[100:200], q, 5) + 100) * 3 + 1
    np.testing.assert_array_equal(ids, truth)


def test_factory_rule_by_size():
    assert fx.choose_factory(1000, 512) == "Flat"
    assert fx.choose_factory(fx.FLAT_MAX, 512) == "HNSW32,Flat"
    assert fx.choose_factory(10_000_000, 512) == "IVF16384,PQ64np"
    assert fx.choose_factory(10_000_000, 64) == "IVF16384,SQ8"  # a Matryoshka prefix: SQ8 (bench_10m)
    assert fx.default_search_params("IVF4096,PQ64") == "nprobe=64"
    assert fx.default_search_params("IVF16384,SQ8") == "nprobe=128"
    assert fx.default_search_params("IVF64,Flat") == "nprobe=64"
    assert fx.default_search_params("HNSW32,Flat") == "efSearch=128"


def test_factory_errors_are_clear():
    with pytest.raises(InvalidInput, match="invalid FAISS factory string"):
        fx.new_index("NotAnIndex42", 16)
    with pytest.raises(InvalidInput, match="needs at least 4096 vectors"):
        fx.training_size("IVF4096,Flat", 100)
    col = VectorCollection("images", 16, 16)
    with pytest.raises(InvalidInput, match="at least 256 vectors"):
        col.build("IVF4,PQ4", np.eye(16, dtype=np.float32))


def test_shortlist_size():
    assert shortlist_size(10, None, 10_000) == 200
    assert shortlist_size(100, None, 10_000) == 400
    assert shortlist_size(10, 5, 10_000) == 10  # never shorter than k
    assert shortlist_size(10, None, 50) == 50  # never longer than the index


@pytest.mark.gpu
def test_gpu_faiss_search_matches_cpu(data):
    if fx.gpu_count() == 0:
        pytest.skip("no GPU FAISS (install vlserve[gpu] on a CUDA machine)")
    x, q = data
    col = make("Flat", x, coarse=32)
    _, ids = col.search(q, 10)
    truth = exact_topk(x, q, 10) * 3 + 1
    assert recall(ids, truth) >= 0.95
