"""FAISS vs Milvus Lite on the same vectors: build time, single-query QPS (paired) and recall@10.

The same synthetic Matryoshka-like 512-d vectors as ``bench_funnel.py`` (Gaussian clusters whose
per-dimension scale decays, L2-normalised), indexed through vlserve's own collection classes, as an
index build does: ``VectorCollection`` (FAISS, in this process) and ``MilvusCollection`` (Milvus Lite,
the Milvus engine in-process behind its gRPC API). Three configurations, each on both stores:

* ``flat``: exact search at full dimension (FAISS ``Flat``; Milvus FLAT);
* ``ivf``: ``IVF1024,Flat`` at full dimension, nprobe 32 (Milvus IVF_FLAT, same nlist and nprobe);
* ``funnel``: HNSW (M 32, efSearch 128) over the 64-d Matryoshka prefix for a shortlist of 200, then
  an exact rerank at full dimension (FAISS: the in-RAM exact store; Milvus: the ``full`` vectors).

For the Milvus funnel the rerank is measured two ways on the same shortlists: fetching the
shortlist's full vectors and scoring them here (what ``MilvusCollection`` does), and asking Milvus
to score them (a second search on ``full`` restricted to the shortlist ids).

Ground truth: exact inner-product top-10 at full dimension. Timing: warm-up, then ``--rounds``
rounds in which FAISS and Milvus alternate query by query (which goes first alternates too); per
round QPS of each and the ratio, reported as median [min, max].

    .venv/bin/python benchmarks/bench_milvus.py --n 1000000
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import spread, write_result
from bench_funnel import K, matryoshka_data, paired_rounds_by_query, recall_at_k

CONFIGS = {"flat": ("Flat", None, ""), "ivf": ("IVF1024,Flat", None, "nprobe=32"),
           "funnel": ("HNSW32,Flat", 64, "efSearch=128")}


def build_both(name: str, x: np.ndarray, dim: int, db: Path, chunk: int) -> tuple[Any, Any, dict[str, Any]]:
    from vlserve.retrieval.collection import VectorCollection
    from vlserve.retrieval.milvus_collection import MilvusCollection, close_client

    factory, coarse, params = CONFIGS[name]
    coarse = coarse or dim
    ids = np.arange(len(x), dtype=np.int64)
    sample = x[np.random.default_rng(1).permutation(len(x))[:65_536]]
    out: dict[str, Any] = {"factory": factory, "coarse_dims": coarse, "search_params": params}
    t = time.perf_counter()
    f = VectorCollection("images", dim, coarse, None, params)
    f.build(factory, sample)
    for s in range(0, len(x), chunk):
        f.add(ids[s:s + chunk], x[s:s + chunk])
    out["faiss_build_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    m = MilvusCollection("images", dim, coarse, None, params, str(db), f"bench_{name}")
    m.build(factory, sample)
    for s in range(0, len(x), chunk):
        m.add(ids[s:s + chunk], x[s:s + chunk])
    t_insert = time.perf_counter() - t
    m.save(db.parent)  # flush: segments sealed and indexed
    close_client(str(db))  # then opened afresh, as a serving process opens it (loads the collection)
    t_open = time.perf_counter()
    m = MilvusCollection("images", dim, coarse, factory, m.search_params, str(db), f"bench_{name}")
    out["milvus_open_s"] = round(time.perf_counter() - t_open, 1)
    out["milvus_build_s"] = round(time.perf_counter() - t, 1)
    out["milvus_insert_s"] = round(t_insert, 1)
    return f, m, out


def rerank_in_milvus(m: Any, q: np.ndarray, k: int, shortlist: int) -> np.ndarray:
    """The funnel with Milvus scoring the shortlist: a search on ``full`` restricted to its ids."""
    from vlserve.matryoshka import truncate

    _, cand = m._ann(np.ascontiguousarray(truncate(q, m.coarse_dims)), "coarse", shortlist)
    ids = [int(i) for i in cand[0] if i >= 0]
    return m._ann(q, "full", k, f"id in {ids}")[1][0]


def rerank_here(m: Any, q: np.ndarray, k: int, shortlist: int) -> np.ndarray:
    """The funnel with the shortlist's full vectors fetched and scored in this process."""
    from vlserve.matryoshka import truncate
    from vlserve.retrieval.funnel import FunnelSearch

    _, cand = m._ann(np.ascontiguousarray(truncate(q, m.coarse_dims)), "coarse", shortlist)
    return FunnelSearch(None, m.vectors, m.coarse_dims, m.dim).rerank(q, cand, k, m.dim)[1][0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--nq", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--configs", default="flat,ivf,funnel")
    ap.add_argument("--chunk", type=int, default=50_000)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/vlserve-bench-milvus"))
    ap.add_argument("--tag", default="")
    args = ap.parse_args()

    import faiss

    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    db = args.workdir / "bench.db"
    t = time.perf_counter()
    x, q = matryoshka_data(args.n, args.nq, args.dim, alpha=0.7, clusters=20_000)
    exact = faiss.IndexFlatIP(args.dim)
    exact.add(x)
    truth = exact.search(q, K)[1]
    del exact
    print(f"data + ground truth: {time.perf_counter() - t:.0f} s", flush=True)
    results: dict[str, Any] = {}
    for name in args.configs.split(","):
        f, m, rec = build_both(name, x, args.dim, db, args.chunk)
        print(name, rec, flush=True)
        m_qps, f_qps, m_ids = paired_rounds_by_query(lambda v, m=m: m.search(v, K)[1][0],
                                                     lambda v, f=f: f.search(v, K)[1][0], q, args.rounds, args.warmup)
        f_ids = f.search(q, K)[1]
        rec.update({"faiss_qps": spread(f_qps, 1), "milvus_qps": spread(m_qps, 1),
                    "milvus_over_faiss": spread([a / b for a, b in zip(m_qps, f_qps, strict=True)]),
                    "faiss_recall@10": round(recall_at_k(f_ids, truth), 4),
                    "milvus_recall@10": round(recall_at_k(m_ids, truth), 4)})
        if name == "funnel":  # the two ways to rerank on Milvus, paired on the same queries
            shortlist = 200
            db_qps, here_qps, db_ids = paired_rounds_by_query(
                lambda v, m=m, s=shortlist: rerank_in_milvus(m, v, K, s),
                lambda v, m=m, s=shortlist: rerank_here(m, v, K, s), q, args.rounds, args.warmup)
            rec["milvus_rerank"] = {
                "fetch_and_score_here_qps": spread(here_qps, 1), "score_in_milvus_qps": spread(db_qps, 1),
                "in_milvus_over_here": spread([a / b for a, b in zip(db_qps, here_qps, strict=True)]),
                "score_in_milvus_recall@10": round(recall_at_k(db_ids, truth), 4)}
        print(name, rec, flush=True)
        results[name] = rec
        m.drop()
        del f, m
        gc.collect()
    from vlserve.retrieval.milvus_collection import close_client

    close_client(str(db))
    shutil.rmtree(args.workdir, ignore_errors=True)
    import pymilvus

    payload = {"n": args.n, "dim": args.dim, "queries": args.nq, "k": K, "rounds": args.rounds,
               "data": "synthetic Matryoshka-like clusters (bench_funnel.py matryoshka_data, alpha 0.7, 20k clusters)",
               "milvus": f"Milvus Lite (pymilvus {pymilvus.__version__}), in-process",
               "shortlist": 200, "results": results}
    path = write_result(f"bench_milvus{args.tag}", payload)
    print(path)


if __name__ == "__main__":
    main()
