"""10M vectors on one machine: the funnel over an on-disk fp16 rerank store and an IVF-SQ8
shortlist index on the 64-d Matryoshka prefix. Build time, serving RSS, single-query QPS, recall@10.

Data: ``--n`` 512-d **synthetic** Matryoshka-like vectors (as ``bench_funnel.py``: ``--clusters``
Gaussian clusters whose per-dimension scale decays as j^-alpha, alpha 0.7: 91% of the variance in the
first 64 dims; L2-normalised; not model embeddings), generated chunk by chunk from seeds so that no
process ever holds them all: chunk ``c`` is drawn from ``default_rng([seed, 1, c])``. Queries: fresh
draws from the same clusters (``default_rng([seed, 2])``), near the data but not in it.

Phases, each in its own process so one's memory does not count against another's:

1. **build** (this process): ``VectorCollection(..., rerank_store="disk-fp16")``, ``.build(factory,
   sample)`` on the first rows (iid draws, so a random sample), ``.add`` chunk by chunk, ``.save``;
   timed separately (data generation is timed apart from ``add``).
2. **serve** (a fresh process that only loads and serves): ``VectorCollection.load``, warm-up, then
   ``--queries`` single-query searches at one FAISS thread in ``--rounds`` rounds (QPS per round),
   plus batched searches at other shortlist / nprobe settings for recall; peak and current resident
   set from ``/proc/self/status`` (VmHWM, VmRSS, RssAnon, RssFile).
3. **truth** (a fresh process): exact full-dimension fp32 top-10 by regenerating the chunks and
   scanning them (so the serving process never touches the whole file); on the first
   ``--fp16-sample`` rows it also ranks the fp16-rounded vectors, to measure what storing fp16 costs.

    python benchmarks/bench_10m.py --n 200000 --tag _check       # a quick check
    nohup python benchmarks/bench_10m.py --n 10000000 > bench_10m.log 2>&1 &     # ~25 min on 2 cores

The shortlist index is ``IVF{~4 sqrt(n)},SQ8`` (see :func:`shortlist_factory`; ``--factory`` overrides).
The working files go to ``--workdir`` and are deleted at the end (``--keep`` keeps them).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import spread, write_result

K = 10
DIM, COARSE = 512, 64


# ---- data ------------------------------------------------------------------------------------------
class Data:
    """Deterministic chunked Matryoshka-like vectors: any chunk can be regenerated in any process."""

    def __init__(self, n: int, alpha: float, clusters: int, chunk: int, seed: int = 0) -> None:
        self.n, self.alpha, self.clusters, self.chunk, self.seed = n, alpha, clusters, chunk, seed
        self.scale = (1.0 / np.arange(1, DIM + 1) ** alpha).astype(np.float32)
        rng = np.random.default_rng([seed, 0])
        self.centres = rng.standard_normal((clusters, DIM), dtype=np.float32) * self.scale

    def _draw(self, rng: np.random.Generator, m: int) -> np.ndarray:
        x = self.centres[rng.integers(0, self.clusters, m)]
        x += 0.6 * rng.standard_normal((m, DIM), dtype=np.float32) * self.scale
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x

    @property
    def chunks(self) -> int:
        return -(-self.n // self.chunk)

    def block(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of chunk ``c``: ids are row numbers."""
        start = c * self.chunk
        m = min(self.chunk, self.n - start)
        return np.arange(start, start + m, dtype=np.int64), self._draw(np.random.default_rng([self.seed, 1, c]), m)

    def queries(self, nq: int) -> np.ndarray:
        return self._draw(np.random.default_rng([self.seed, 2]), nq)


def data_of(args: argparse.Namespace) -> Data:
    return Data(args.n, args.alpha, args.clusters, args.chunk)


def shortlist_factory(n: int) -> str:
    """IVF with nlist ~ 4 sqrt(n) (a power of two, as ``choose_factory``) and SQ8 codes: 64 bytes per
    64-d prefix, 0.64 GB at 10M. ``choose_factory``'s PQ16 codes (16 bytes) cost ~0.09 recall@10 at
    the same nprobe in a 200k check, and the rerank cannot win back what the shortlist missed."""
    return f"IVF{2 ** round(math.log2(4 * math.sqrt(n)))},SQ8"


def proc_status() -> dict[str, float]:
    """VmHWM (peak), VmRSS, RssAnon, RssFile of this process in GiB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            out[key] = round(int(value.split()[0]) / 2**20, 3)
    return out


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0]) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


# ---- phases ----------------------------------------------------------------------------------------
def phase_build(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    import faiss

    from vlserve import provenance
    from vlserve.retrieval import factory as fx
    from vlserve.retrieval.collection import VectorCollection

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    data = data_of(args)
    factory = args.factory or shortlist_factory(args.n)
    nlist = int(factory.split(",")[0][3:])
    train_n = min(args.n, args.train_per_list * nlist)
    folder.mkdir(parents=True, exist_ok=True)
    col = VectorCollection("images", DIM, COARSE, rerank_store="disk-fp16", folder=folder)

    t = time.perf_counter()
    parts, have, c = [], 0, 0
    while have < train_n:
        parts.append(data.block(c)[1][:train_n - have])
        have, c = have + len(parts[-1]), c + 1
    sample = np.concatenate(parts)
    del parts
    gen_s = time.perf_counter() - t
    t = time.perf_counter()
    col.build(factory, sample)
    train_s = time.perf_counter() - t
    del sample
    print(f"trained {factory} on {train_n} in {train_s:.1f}s", flush=True)

    add_s = 0.0
    for c in range(data.chunks):
        t = time.perf_counter()
        ids, x = data.block(c)
        gen_s += time.perf_counter() - t
        t = time.perf_counter()
        col.add(ids, x)
        add_s += time.perf_counter() - t
        if c % 10 == 0 or c == data.chunks - 1:
            print(f"added {col.ntotal}/{args.n}: add {add_s:.0f}s, generate {gen_s:.0f}s, rss {proc_status()}",
                  flush=True)
    t = time.perf_counter()
    col.save(folder)
    save_s = time.perf_counter() - t
    files = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}
    return {"git_commit": provenance.git_commit(), "factory": factory,
            "choose_factory_at_n": fx.choose_factory(args.n, COARSE), "search_params": col.search_params,
            "train_vectors": train_n, "train_s": round(train_s, 1),
            "add_s": round(add_s, 1), "save_s": round(save_s, 1), "generate_s": round(gen_s, 1),
            "build_total_s": round(train_s + add_s + save_s, 1), "files_bytes": files,
            "build_process_rss_gib": proc_status()}


def phase_serve(args: argparse.Namespace, folder: Path, out: Path) -> None:
    """In a fresh process: load, warm up, one pass at the default setting on the page cache as the build
    left it, then interleaved rounds of single queries over every setting (the default and ``--sweep``);
    resident set from /proc/self/status."""
    import faiss

    from vlserve.retrieval import factory as fx
    from vlserve.retrieval.collection import VectorCollection
    from vlserve.retrieval.funnel import shortlist_size

    info = json.loads((folder / "build.json").read_text())
    t = time.perf_counter()
    col = VectorCollection.load(folder, "images", DIM, COARSE, info["factory"], info["search_params"], "disk-fp16")
    load_s = time.perf_counter() - t
    after_load = proc_status()
    q = data_of(args).queries(args.queries)
    faiss.omp_set_num_threads(args.threads)
    default = fx.default_search_params(info["factory"])
    settings = [(int(default.split("=")[1]), None)] + [
        (int(p), int(s)) for p, s in (x.split(":") for x in args.sweep.split(",") if x)]

    def answer(setting: tuple[int, int | None], rows: np.ndarray, found: np.ndarray) -> float:
        """Single-query searches of ``rows`` at one setting; returns queries per second."""
        col.search_params = f"nprobe={setting[0]}"
        fx.set_search_params(col.search_index, col.search_params)
        t = time.perf_counter()
        for i in rows:
            found[i] = col.search(q[i:i + 1], K, shortlist=setting[1])[1][0]
        return len(rows) / (time.perf_counter() - t)

    for v in q[:args.warmup]:
        col.search(v[None], K)
    found = {s: np.full((len(q), K), -1, np.int64) for s in settings}
    first_pass = answer(settings[0], np.arange(len(q)), found[settings[0]])  # the page cache as the build left it
    print(f"first pass: {first_pass:.1f} q/s", flush=True)
    qps: dict[tuple[int, int | None], list[float]] = {s: [] for s in settings}
    for r, block in enumerate(np.array_split(np.arange(len(q)), args.rounds)):
        for s in (settings if r % 2 == 0 else settings[::-1]):
            qps[s].append(answer(s, block, found[s]))
        print(f"round {r + 1}: " + ", ".join(f"{s}: {qps[s][-1]:.1f} q/s" for s in settings), flush=True)
    report = []
    for n, s in enumerate(settings):
        name = f"found_{n}.npy"
        np.save(out / name, found[s])
        report.append({"nprobe": s[0], "shortlist": s[1] or shortlist_size(K, None, col.ntotal),
                       "default": n == 0, "qps": spread(qps[s], 1), "found": name})
    (out / "serve.json").write_text(json.dumps({
        "load_s": round(load_s, 2), "rss_after_load_gib": after_load, "rss_after_serving_gib": proc_status(),
        "search_threads": args.threads, "warmup_queries": args.warmup,
        "first_pass_qps_default": round(first_pass, 1), "settings": report}))


def phase_truth(args: argparse.Namespace, out: Path) -> None:
    """Exact fp32 top-10 over all rows by regenerating the chunks; fp16 vs fp32 on the first rows."""
    data = data_of(args)
    q = data.queries(args.queries)
    best_s = np.full((len(q), K), -np.inf, np.float32)
    best_i = np.full((len(q), K), -1, np.int64)
    sub = {"fp32": (best_s.copy(), best_i.copy()), "fp16": (best_s.copy(), best_i.copy())}
    max_err = 0.0

    def merge(acc: tuple[np.ndarray, np.ndarray], scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        top = np.argpartition(-scores, K - 1, axis=1)[:, :K]
        s = np.concatenate([acc[0], np.take_along_axis(scores, top, 1)], 1)
        i = np.concatenate([acc[1], ids[top]], 1)
        keep = np.argsort(-s, axis=1, kind="stable")[:, :K]
        return np.take_along_axis(s, keep, 1), np.take_along_axis(i, keep, 1)

    t = time.perf_counter()
    for c in range(data.chunks):
        ids, x = data.block(c)
        scores = q @ x.T
        best_s, best_i = merge((best_s, best_i), scores, ids)
        if ids[0] < args.fp16_sample:
            m = int(min(len(ids), args.fp16_sample - ids[0]))
            s16 = q @ x[:m].astype(np.float16).astype(np.float32).T
            max_err = max(max_err, float(np.abs(s16 - scores[:, :m]).max()))
            sub["fp32"] = merge(sub["fp32"], scores[:, :m], ids[:m])
            sub["fp16"] = merge(sub["fp16"], s16, ids[:m])
        if c % 10 == 0:
            print(f"truth chunk {c + 1}/{data.chunks} {time.perf_counter() - t:.0f}s", flush=True)
    np.save(out / "truth.npy", best_i)
    (out / "truth.json").write_text(json.dumps({
        "truth_s": round(time.perf_counter() - t, 1), "fp16_sample_rows": int(min(args.fp16_sample, args.n)),
        "fp16_exact_recall@10_vs_fp32": round(recall(sub["fp16"][1], sub["fp32"][1]), 4) if args.fp16_sample else None,
        "fp16_max_abs_score_error": round(max_err, 5),
        "rss_gib": proc_status()}))


def run_phase(phase: str, argv: list[str]) -> None:
    subprocess.run([sys.executable, __file__, *argv, "--phase", phase], check=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10_000_000)
    p.add_argument("--chunk", type=int, default=200_000, help="rows generated (and added) at a time")
    p.add_argument("--alpha", type=float, default=0.7)
    p.add_argument("--clusters", type=int, default=20_000)
    p.add_argument("--factory", default=None, help="search index over the 64-d prefix (default: IVF~4sqrt(n),SQ8)")
    p.add_argument("--train-per-list", type=int, default=40, help="training vectors per IVF list (FAISS wants >= 39)")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--threads", type=int, default=1, help="FAISS threads while serving (1: one core per query)")
    p.add_argument("--sweep", default="128:200,256:200,512:200,512:400",
                   help="settings nprobe:shortlist timed and scored beside the default, comma-separated")
    p.add_argument("--fp16-sample", type=int, default=1_000_000, help="rows on which fp16 vs fp32 is measured")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "vlserve-bench-10m",
                   help="where the index (10.3 GB at 10M) and the query results go")
    p.add_argument("--tag", default="", help="suffix of the results file (bench_10m{tag}.json)")
    p.add_argument("--keep", action="store_true", help="keep the index files in --workdir")
    p.add_argument("--reuse", action="store_true",
                   help="reuse the index and ground truth an earlier --keep run left in --workdir (serve again)")
    p.add_argument("--phase", choices=["serve", "truth"], default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    folder, out = args.workdir / "index", args.workdir / "out"
    if args.phase == "serve":
        return phase_serve(args, folder, out)
    if args.phase == "truth":
        return phase_truth(args, out)

    argv = sys.argv[1:]
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.reuse and (folder / "build.json").is_file():
        build = json.loads((folder / "build.json").read_text())
        build["reused_from_an_earlier_run"] = True
    else:
        shutil.rmtree(folder, ignore_errors=True)
        build = phase_build(args, folder)
        (folder / "build.json").write_text(json.dumps(build))
    print("build", build, flush=True)
    run_phase("serve", argv)
    serve = json.loads((out / "serve.json").read_text())
    print("serve", serve, flush=True)
    if not (args.reuse and (out / "truth.npy").is_file() and (out / "truth.json").is_file()):
        run_phase("truth", argv)
        truth_info = json.loads((out / "truth.json").read_text())
    else:
        truth_info = {**json.loads((out / "truth.json").read_text()), "reused_from_an_earlier_run": True}
    truth = np.load(out / "truth.npy")
    for s in serve["settings"]:
        s["recall@10"] = round(recall(np.load(out / s.pop("found")), truth), 4)
    default = serve["settings"][0]
    meeting = [s for s in serve["settings"] if s["recall@10"] >= 0.95]
    fastest = max(meeting, key=lambda s: s["qps"]["median"]) if meeting else None
    var = np.arange(1, DIM + 1) ** (-2 * args.alpha)
    peak = serve["rss_after_serving_gib"]["VmHWM"]
    write_result(f"bench_10m{args.tag}", {
        "data": {"kind": "synthetic (Gaussian clusters, Matryoshka-like variance decay; not model embeddings)",
                 "n": args.n, "dim": DIM, "coarse_dims": COARSE, "alpha": args.alpha, "clusters": args.clusters,
                 "variance_in_first_64_dims": round(float(var[:COARSE].sum() / var.sum()), 3),
                 "queries": args.queries, "queries_kind": "fresh draws from the data's clusters", "chunk": args.chunk},
        "rerank_store": "disk-fp16", "k": K, "build": build, "serve": serve, "truth": truth_info,
        "summary": {"build_s": {"train": build["train_s"], "add": build["add_s"], "save": build["save_s"]},
                    "serving_peak_rss_gib": peak, "default": {k: default[k] for k in ("nprobe", "shortlist")},
                    "default_single_query_qps": default["qps"]["median"],
                    "default_qps_min_max": [default["qps"]["min"], default["qps"]["max"]],
                    "default_recall@10": default["recall@10"],
                    "fastest_setting_with_recall@10>=0.95": fastest and {
                        "nprobe": fastest["nprobe"], "shortlist": fastest["shortlist"],
                        "qps_median": fastest["qps"]["median"],
                        "qps_min_max": [fastest["qps"]["min"], fastest["qps"]["max"]],
                        "recall@10": fastest["recall@10"]},
                    "fp16_vs_fp32_exact_recall@10": truth_info["fp16_exact_recall@10_vs_fp32"],
                    "fp16_sample_rows": truth_info["fp16_sample_rows"]},
        "target": "serving resident set < 8 GiB and recall@10 >= 0.95 (10M x 512, one machine)",
        "total_s": round(time.perf_counter() - t0, 1)})
    if not args.keep:
        shutil.rmtree(args.workdir / "index", ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
