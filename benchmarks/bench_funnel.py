"""Matryoshka funnel search vs exact search: single-query QPS and recall@10 against exact search.

Two data sets (``--data``):

* ``synthetic`` (default, ``--n`` 1M): 512-d **synthetic** vectors with Matryoshka-like structure
  (uniform random vectors have no real neighbours, so their recall figures mean nothing): 20,000
  Gaussian clusters whose per-dimension scale decays as j^-alpha, so the leading dims carry most of
  the variance (alpha 0.7: 91% in the first 64 dims); L2-normalised. Queries: fresh draws.
* ``toy`` (``--n`` 100k): **real Matryoshka embeddings** from the committed toy model (128-d, trained
  on nested prefixes 16/32/64/128): toy-world test scenes, each augmented ``--augment`` times (flips,
  shifts, brightness, noise) so that ``--n`` images come from ``--n / --augment`` scenes. Queries:
  augmented views of other scenes.

Every index is built only through the public API, as ``vlserve index`` builds it:
``VectorCollection(name, dim, coarse_dims)``, ``.build(factory, sample)``, ``.add(ids, vectors)``,
searched with ``.search(query, k)`` (the production default shortlist). The exact baseline is a
``Flat`` collection at full dimension. Ground truth: exact inner-product top-10 at full dimension.

Timing: every method and the baseline get a warm-up of ``--warmup`` queries; then the queries are cut
into ``--rounds`` rounds and, within a round, baseline and method alternate query by query (which
goes first alternates too). Per round: method QPS / baseline QPS; reported as median [min, max].

    .venv/bin/python benchmarks/bench_funnel.py [--n 1000000] [--methods funnel,funnel-hnsw]
    .venv/bin/python benchmarks/bench_funnel.py --data toy --n 100000 --tag _toy
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
from _common import spread, write_result

K = 10


def matryoshka_data(n: int, nq: int, dim: int, alpha: float, clusters: int, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scale = (1.0 / np.arange(1, dim + 1) ** alpha).astype(np.float32)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32) * scale

    def draw(m: int) -> np.ndarray:
        out = np.empty((m, dim), np.float32)
        for s in range(0, m, 100_000):
            e = min(m, s + 100_000)
            x = centres[rng.integers(0, clusters, e - s)]
            x += 0.6 * rng.standard_normal((e - s, dim), dtype=np.float32) * scale
            out[s:e] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out

    return draw(n), draw(nq)


def augment(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random view of a toy scene: flips, a small shift, brightness, pixel noise."""
    x = img
    if rng.random() < 0.5:
        x = x[:, ::-1]
    if rng.random() < 0.3:
        x = x[::-1]
    x = np.roll(x, tuple(rng.integers(-4, 5, 2)), axis=(0, 1))
    x = x.astype(np.float32) * rng.uniform(0.8, 1.2) + rng.normal(0, 6, x.shape)
    return np.clip(x, 0, 255).astype(np.uint8)


def toy_data(n: int, nq: int, views: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Toy-model embeddings of ``n`` augmented views of ``n / views`` test scenes, and ``nq`` queries
    (views of other scenes)."""
    from vlserve.models import Runtime, load_dual_encoder
    from vlserve.toyworld.dataset import sample

    model = load_dual_encoder("toy", Runtime(device="cpu", precision="fp32", max_batch=256))
    rng = np.random.default_rng(seed)
    scenes = -(-n // views)

    def embed(first: int, count: int, per: int, total: int) -> np.ndarray:
        out = np.empty((total, model.embed_dim), np.float32)
        done, pending = 0, []
        for s in range(first, first + count):
            base = sample("test", s).scene.image
            pending += [augment(base, rng) for _ in range(min(per, total - done - len(pending)))]
            if pending and (len(pending) >= 256 or s == first + count - 1):
                out[done:done + len(pending)] = model.encode_images(pending)
                done, pending = done + len(pending), []
        return out[:done]

    t = time.perf_counter()
    x = embed(0, scenes, views, n)
    q = embed(scenes, nq, 1, nq)
    return x, q, {"model": "toy", "fingerprint": model.fingerprint, "scenes": scenes, "views_per_scene": views,
                  "embed_s": round(time.perf_counter() - t, 1)}


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def paired_rounds_by_query(method: Any, baseline: Any, queries: np.ndarray, rounds: int, warmup: int
                           ) -> tuple[list[float], list[float], np.ndarray]:
    """Warm both up, then per round alternate baseline and method query by query; returns per-round
    method QPS, per-round baseline QPS and the method's ids for every query."""
    for v in queries[:warmup]:
        baseline(v[None])
        method(v[None])
    ids = np.full((len(queries), K), -1, np.int64)
    m_qps, b_qps = [], []
    for r, block in enumerate(np.array_split(np.arange(len(queries)), rounds)):
        t_m = t_b = 0.0
        for j, i in enumerate(block):
            v = queries[i:i + 1]
            first_baseline = (r + j) % 2 == 0
            if first_baseline:
                t0 = time.perf_counter()
                baseline(v)
                t_b += time.perf_counter() - t0
            t0 = time.perf_counter()
            ids[i] = method(v)
            t_m += time.perf_counter() - t0
            if not first_baseline:
                t0 = time.perf_counter()
                baseline(v)
                t_b += time.perf_counter() - t0
        m_qps.append(len(block) / t_m)
        b_qps.append(len(block) / t_b)
    return m_qps, b_qps, ids


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


METHODS = {  # name -> (factory, coarse dims: "prefix" = the funnel's Matryoshka prefix, "full" = no funnel)
    "funnel": ("Flat", "prefix"),
    "funnel-hnsw": ("HNSW32,Flat", "prefix"),
    "hnsw": ("HNSW32,Flat", "full"),
    "ivfpq+rr": ("IVF1024,PQ{m}np", "full"),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=["synthetic", "toy"], default="synthetic")
    p.add_argument("--n", type=int, default=None, help="vectors (default: 1M synthetic, 100k toy)")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--methods", default="funnel", help=f"comma-separated, from {', '.join(METHODS)}")
    p.add_argument("--alpha", type=float, default=0.7, help="synthetic: per-dimension scale j^-alpha")
    p.add_argument("--clusters", type=int, default=20_000)
    p.add_argument("--augment", type=int, default=10, help="toy: views per scene")
    p.add_argument("--threads", type=int, default=1,
                   help="FAISS OpenMP threads while searching (1: one core per query, the serving case)")
    p.add_argument("--tag", default="", help="suffix of the results file (bench_funnel{tag}.json)")
    args = p.parse_args()

    import faiss

    from vlserve.retrieval.collection import VectorCollection
    from vlserve.retrieval.funnel import shortlist_size

    t_start = time.perf_counter()
    if args.data == "synthetic":
        n, dim, coarse = args.n or 1_000_000, 512, 64
        x, q = matryoshka_data(n, args.queries, dim, args.alpha, args.clusters)
        var = np.arange(1, dim + 1) ** (-2 * args.alpha)
        data_info: dict[str, Any] = {
            "kind": "synthetic (Gaussian clusters, Matryoshka-like variance decay; not model embeddings)",
            "alpha": args.alpha, "clusters": args.clusters,
            "variance_in_first_64_dims": round(float(var[:64].sum() / var.sum()), 3)}
    else:
        n = args.n or 100_000
        x, q, data_info = toy_data(n, args.queries, args.augment)
        dim, coarse = x.shape[1], 16  # the toy model's declared prefix >= dim/8, as --coarse-dims auto picks
        data_info["kind"] = "toy-model image embeddings (real Matryoshka vectors)"
    data_info.update({"n": n, "dim": dim, "coarse_dims": coarse, "queries": args.queries,
                      "prepare_s": round(time.perf_counter() - t_start, 1)})
    print(data_info, flush=True)
    ids = np.arange(n, dtype=np.int64)

    t = time.perf_counter()
    exact = VectorCollection("images", dim, dim)
    exact.build("Flat", x[:0])
    exact.add(ids, x)
    exact_build_s = time.perf_counter() - t
    truth = exact.search(q, K)[1]  # batched, all threads
    faiss.omp_set_num_threads(args.threads)

    def baseline(v: np.ndarray) -> Any:
        return exact.search(v, K)[1][0]

    results: dict[str, Any] = {"exact_flat": {"build_s": round(exact_build_s, 1), "index_bytes": n * dim * 4}}
    summary: dict[str, Any] = {}
    for name in args.methods.split(","):
        factory, which = METHODS[name]
        factory = factory.format(m=dim // 8)
        dims = coarse if which == "prefix" else dim
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        t = time.perf_counter()
        col = VectorCollection("images", dim, dims)
        train = x[np.random.default_rng(0).permutation(n)[:40 * 1024]] if "IVF" in factory else x[:0]
        col.build(factory, train)
        col.add(ids, x)
        build_s = time.perf_counter() - t
        faiss.omp_set_num_threads(args.threads)
        m_qps, b_qps, found = paired_rounds_by_query(lambda v, c=col: c.search(v, K)[1][0], baseline, q,
                                                     args.rounds, args.warmup)
        speedup = spread([a / b for a, b in zip(m_qps, b_qps, strict=True)], 2)
        results[name] = {"factory": factory, "search_dims": dims, "rerank_dims": dim,
                         "shortlist": shortlist_size(K, None, n), "search_params": col.search_params,
                         "build_s": round(build_s, 1), "search_index_bytes": int(faiss.serialize_index(
                             col.search_index).nbytes),
                         "qps": spread(m_qps, 1), "paired_exact_qps": spread(b_qps, 1),
                         "speedup_vs_exact": speedup, "recall@10": round(recall_at_k(found, truth), 4)}
        print(name, results[name], flush=True)
        summary[name] = {"speedup_vs_exact_median": speedup["median"], "speedup_min_max": [speedup["min"],
                         speedup["max"]], "recall@10": results[name]["recall@10"]}
        del col
    write_result(f"bench_funnel{args.tag}", {
        "data": data_info, "k": K, "rounds": args.rounds, "warmup_queries": args.warmup,
        "search_threads": args.threads, "results": results, "summary": summary,
        "target": "funnel >= 5x exact single-query QPS at recall@10 >= 0.95 (synthetic 1M)",
        "peak_rss_gib": round(rss_gib(), 2), "total_s": round(time.perf_counter() - t_start, 1)})


if __name__ == "__main__":
    main()
