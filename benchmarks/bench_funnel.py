"""Matryoshka funnel search vs FAISS baselines: single-query QPS, recall@10 against exact search,
build time and index memory.

Data: ``--n`` synthetic 512-d vectors with Matryoshka-like structure (uniform random vectors have no
real neighbours, so their recall figures mean nothing): 20,000 Gaussian clusters whose per-dimension
scale decays as j^-alpha, so the leading dims carry most of the variance, as in an MRL-trained
model; L2-normalised. Queries are fresh draws from the same distribution. Ground truth: exact
inner-product top-10 over all 512 dims.

Speed-ups are paired: each method's queries alternate one by one with Flat's on the same query, so
load from other processes on a shared machine slows both alike.

Methods (each through the production code where it exists: ``VectorCollection`` = search index over
a prefix + exact full-dimension rerank):

* ``flat512``     exact brute force at 512 dims (the baseline)
* ``ivfpq512``    IVF1024,PQ64 at 512 dims, nprobe 32, no rerank (FAISS alone)
* ``ivfpq512+rr`` the same index, shortlist 200 (``+rr1000``: 1000) reranked exactly at 512 dims
* ``hnsw512``     HNSW32 at 512 dims, efSearch 128 (optional: ``--hnsw512``, ~6 min build on 2 cores at 1M)
* ``funnel64``    Flat over the first 64 dims, shortlist 200, exact rerank at 512 (Kusupati et al.)
* ``funnel64-hnsw`` HNSW32 over the first 64 dims, shortlist 200, rerank at 512 (the size rule's
  index for 250k-5M items with a Matryoshka model)

    .venv/bin/python benchmarks/bench_funnel.py [--n 1000000] [--queries 200] [--hnsw512] [--tag _200k]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_result

D, K, SHORTLIST = 512, 10, 200


def matryoshka_data(n: int, nq: int, alpha: float, clusters: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scale = (1.0 / np.arange(1, D + 1) ** alpha).astype(np.float32)
    centres = rng.standard_normal((clusters, D), dtype=np.float32) * scale

    def draw(m: int) -> np.ndarray:
        out = np.empty((m, D), np.float32)
        for s in range(0, m, 100_000):
            e = min(m, s + 100_000)
            x = centres[rng.integers(0, clusters, e - s)]
            x += 0.6 * rng.standard_normal((e - s, D), dtype=np.float32) * scale
            out[s:e] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out

    return draw(n), draw(nq)


def single_query_qps(search: Any, queries: np.ndarray, max_seconds: float) -> tuple[float, np.ndarray]:
    """Queries one at a time (the latency-bound case); stops early after ``max_seconds``."""
    ids = np.full((len(queries), K), -1, np.int64)
    t0 = time.perf_counter()
    done = 0
    for i in range(len(queries)):
        ids[i] = search(queries[i:i + 1])
        done += 1
        if time.perf_counter() - t0 > max_seconds and done >= 10:
            break
    return done / (time.perf_counter() - t0), ids[:done]


def paired_speedup(search: Any, baseline: Any, queries: np.ndarray, max_seconds: float
                   ) -> tuple[float, float, np.ndarray]:
    """Alternate baseline and method query by query, so load from other processes on a shared machine
    hits both alike; returns (method QPS, baseline QPS over the same queries, method ids)."""
    ids = np.full((len(queries), K), -1, np.int64)
    t_method = t_base = 0.0
    done = 0
    for i in range(len(queries)):
        v = queries[i:i + 1]
        t0 = time.perf_counter()
        baseline(v)
        t1 = time.perf_counter()
        ids[i] = search(v)
        t2 = time.perf_counter()
        t_base, t_method, done = t_base + t1 - t0, t_method + t2 - t1, done + 1
        if t_base + t_method > max_seconds and done >= 10:
            break
    return done / t_method, done / t_base, ids[:done]


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--alpha", type=float, default=0.7, help="per-dimension scale j^-alpha")
    p.add_argument("--clusters", type=int, default=20_000)
    p.add_argument("--hnsw512", action="store_true", help="also build HNSW32 at 512 dims (slow)")
    p.add_argument("--max-seconds", type=float, default=20.0, help="time cap per single-query run")
    p.add_argument("--threads", type=int, default=1,
                   help="FAISS OpenMP threads while searching (1: one core per query, the serving case)")
    p.add_argument("--build-threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--tag", default="", help="suffix of the results file (bench_funnel{tag}.json)")
    args = p.parse_args()

    import faiss

    def search_threads() -> None:
        faiss.omp_set_num_threads(args.threads)

    def build_threads() -> None:
        faiss.omp_set_num_threads(args.build_threads)

    from vlserve.retrieval.collection import VectorCollection

    load_start = round(os.getloadavg()[0], 2)
    t0 = time.perf_counter()
    x, q = matryoshka_data(args.n, args.queries, args.alpha, args.clusters)
    var = (np.arange(1, D + 1) ** (-2 * args.alpha))
    data_info = {"n": args.n, "dim": D, "queries": args.queries, "alpha": args.alpha, "clusters": args.clusters,
                 "variance_in_first_64_dims": round(float(var[:64].sum() / var.sum()), 3),
                 "generate_s": round(time.perf_counter() - t0, 1)}
    print(data_info, flush=True)
    ids = np.arange(args.n, dtype=np.int64)
    results: dict[str, dict[str, Any]] = {}

    # exact baseline: the full store every collection keeps (IndexIDMap2 over IndexFlatIP)
    t = time.perf_counter()
    col = VectorCollection("images", D, 64)
    col.build("Flat", x[:0])
    col.add(ids, x)
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    build_threads()
    truth = col.full.search(q, K)[1]
    search_threads()
    print(f"ground truth (batched exact) in {time.perf_counter() - t:.1f}s", flush=True)
    qps, found = single_query_qps(lambda v: col.full.search(v, K)[1][0], q, args.max_seconds)
    results["flat512"] = {"qps": round(qps, 2), "recall@10": recall_at_k(found, truth[:len(found)]),
                          "build_s": round(build_s, 1), "index_bytes": args.n * D * 4}
    print("flat512", results["flat512"], flush=True)

    def flat(v: np.ndarray) -> Any:
        return col.full.search(v, K)

    def run(name: str, c: VectorCollection, build_s: float, index_bytes: int, **kw: Any) -> None:
        qps, base_qps, found = paired_speedup(lambda v: c.search(v, K, **kw)[1][0], flat, q, args.max_seconds)
        results[name] = {"qps": round(qps, 2), "paired_flat_qps": round(base_qps, 2),
                         "speedup_vs_flat": round(qps / base_qps, 2),
                         "recall@10": round(recall_at_k(found, truth[:len(found)]), 4), "build_s": round(build_s, 1),
                         "search_index_bytes": index_bytes, "rerank_store_bytes": args.n * D * 4, **kw}
        print(name, results[name], flush=True)

    for name, factory, coarse in [("funnel64", "Flat", 64), ("funnel64-hnsw", "HNSW32,Flat", 64),
                                  ("ivfpq512+rr", "IVF1024,PQ64", D)] + (
                                      [("hnsw512+rr", "HNSW32,Flat", D)] if args.hnsw512 else []):
        build_threads()
        t = time.perf_counter()
        c = VectorCollection("images", D, coarse)
        c.full = col.full  # share the exact store (the same vectors)
        sample = x[np.random.default_rng(0).permutation(args.n)[:40 * 1024]] if "IVF" in factory else x[:0]
        c.build(factory, sample)
        assert c._search is not None
        c._search.add_with_ids(np.ascontiguousarray(x[:, :coarse] / np.linalg.norm(x[:, :coarse], axis=1,
                                                                                   keepdims=True)), ids)
        build = time.perf_counter() - t
        nbytes = faiss.serialize_index(c._search).nbytes
        search_threads()
        if "IVF" in factory:
            faiss.ParameterSpace().set_index_parameters(c._search, "nprobe=32")
            c.search_params = "nprobe=32"
            raw_qps, base_qps, raw = paired_speedup(lambda v, s=c._search: s.search(v, K)[1][0], flat, q,
                                                    args.max_seconds)
            results["ivfpq512"] = {"qps": round(raw_qps, 2), "paired_flat_qps": round(base_qps, 2),
                                   "speedup_vs_flat": round(raw_qps / base_qps, 2),
                                   "recall@10": round(recall_at_k(raw, truth[:len(raw)]), 4),
                                   "build_s": round(build, 1), "index_bytes": nbytes, "nprobe": 32}
            print("ivfpq512", results["ivfpq512"], flush=True)
        if "HNSW" in factory and coarse == D:
            faiss.ParameterSpace().set_index_parameters(c._search, "efSearch=128")
            raw_qps, base_qps, raw = paired_speedup(lambda v, s=c._search: s.search(v, K)[1][0], flat, q,
                                                    args.max_seconds)
            results["hnsw512"] = {"qps": round(raw_qps, 2), "paired_flat_qps": round(base_qps, 2),
                                  "speedup_vs_flat": round(raw_qps / base_qps, 2),
                                  "recall@10": round(recall_at_k(raw, truth[:len(raw)]), 4),
                                  "build_s": round(build, 1), "index_bytes": nbytes, "efSearch": 128}
            print("hnsw512", results["hnsw512"], flush=True)
        run(name, c, build, nbytes, shortlist=SHORTLIST)
        if "IVF" in factory:
            run(name.replace("+rr", "+rr1000"), c, build, nbytes, shortlist=1000)
        del c
    summary = {"funnel64_speedup_vs_flat": results["funnel64"]["speedup_vs_flat"],
               "funnel64_recall@10": results["funnel64"]["recall@10"],
               "target": "funnel >= 5x Flat single-query QPS at recall@10 >= 0.95",
               "met": results["funnel64"]["speedup_vs_flat"] >= 5 and results["funnel64"]["recall@10"] >= 0.95,
               "peak_rss_gib": round(rss_gib(), 2), "total_s": round(time.perf_counter() - t0, 1),
               "loadavg_1m_start_end": [load_start, round(os.getloadavg()[0], 2)]}
    write_result(f"bench_funnel{args.tag}", {
        "data": data_info, "k": K, "shortlist": SHORTLIST, "search_threads": args.threads,
        "build_threads": args.build_threads, "results": results, "summary": summary})


if __name__ == "__main__":
    main()
