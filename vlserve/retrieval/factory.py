"""Which FAISS index to build, and building it.

The rule (``choose_factory``), for ``n`` vectors of the search dimension ``d`` (the Matryoshka
prefix when the funnel is on), metric inner product on L2-normalised vectors:

* ``n < 250,000``: ``Flat``. Exact; a brute-force scan of 250k x 512 floats is ~30 ms per query on
  two cores (less on a 64-d prefix), needs no training and supports deletion.
* ``250,000 <= n < 5,000,000``: ``HNSW32,Flat``. Recall ~0.93+ at efSearch 128-256 before the
  full-dimension rerank, ~10x Flat's single-query speed at 1M; no training, but builds slowly
  (~6 min per 1M x 512 on two cores, much less on a 64-d prefix) and cannot delete in place (deleted
  ids are dropped at rerank time, see ``collection.py``).
* ``n >= 5,000,000``: IVF with ``nlist`` ~ 4 sqrt(n) (a power of two), trained on a sample of
  ``64 * nlist`` vectors, searched with ``nprobe`` = max(64, nlist / 128). Codes: on a Matryoshka
  prefix of at most 128 dims, ``SQ8`` (d bytes per vector: 64 B at 64-d, 0.64 GB per 10M); at 10M x
  64-d it gave recall@10 0.970 after the exact rerank at nprobe 128 (``bench_10m.json``), where
  ``PQ16`` lost too much (0.795 vs SQ8's 0.880 at 200k, ``bench_10m_200k_*.json``). Wider search
  vectors get ``PQ{m}np`` with ``m`` = d/8 bytes (d/4 below 512): compact enough for tens of millions
  of vectors, its approximation repaired by the exact full-dimension rerank.

``--factory`` overrides the rule with any FAISS factory string (``"HNSW32,Flat"``, ``"IVF4096,PQ64"``).
GPU FAISS (the ``[gpu]`` extra) is used for search when a GPU is visible, for index types it supports.
"""

from __future__ import annotations

import logging
import math
import re

import faiss
import numpy as np

from vlserve.errors import InvalidInput

log = logging.getLogger("vlserve.retrieval")
FLAT_MAX = 250_000
HNSW_MAX = 5_000_000


def choose_factory(n: int, d: int) -> str:
    """The documented size rule (see the module docstring)."""
    if n < FLAT_MAX:
        return "Flat"
    if n < HNSW_MAX:
        return "HNSW32,Flat"
    nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
    if d <= 128:
        return f"IVF{nlist},SQ8"
    m = d // 8 if d >= 512 else max(1, d // 4)
    while d % m:
        m -= 1
    return f"IVF{nlist},PQ{m}np"  # np: no polysemous training (unused here; it made training ~12x slower)


def default_search_params(factory: str) -> str:
    """Search-time knobs recorded in the manifest: nprobe for IVF, efSearch for HNSW."""
    params = []
    if m := re.search(r"IVF(\d+)", factory):
        nlist = int(m.group(1))
        params.append(f"nprobe={min(nlist, max(64, nlist // 128))}")
    if "HNSW" in factory:
        params.append("efSearch=128")
    return ",".join(params)


def new_index(factory: str, d: int) -> faiss.IndexIDMap2:
    """An empty inner-product index from a factory string, wrapped so it keeps our int64 ids."""
    try:
        base = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else ""
        raise InvalidInput(f"invalid FAISS factory string {factory!r} for {d} dims ({first})") from None
    return faiss.IndexIDMap2(base)


def training_size(factory: str, n: int) -> int:
    """How many vectors to train on: 64 per IVF list (FAISS's k-means wants >= 39), else 50k."""
    if m := re.search(r"IVF(\d+)", factory):
        nlist = int(m.group(1))
        if n < nlist:
            raise InvalidInput(f"factory {factory!r} needs at least {nlist} vectors to train its {nlist} lists; "
                               f"this index has {n}: use a smaller IVF size or the default factory")
        return min(n, 64 * nlist)
    return min(n, 50_000)


def train(index: faiss.Index, sample: np.ndarray, factory: str) -> None:
    """Train ``index`` (no-op for Flat/HNSW) on ``sample``, turning FAISS errors into clear ones."""
    if index.is_trained:
        return
    if "PQ" in factory and len(sample) < 256:
        raise InvalidInput(f"factory {factory!r} needs at least 256 vectors to train its product quantizer; "
                           f"got {len(sample)}")
    try:
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
    except RuntimeError as e:
        raise InvalidInput(f"training FAISS index {factory!r} on {len(sample)} vectors failed: {e}") from None


def set_search_params(index: faiss.Index, params: str) -> None:
    if params:
        faiss.ParameterSpace().set_index_parameters(index, params)  # type: ignore[arg-type]


def gpu_count() -> int:
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get else 0


def to_search_device(index: faiss.Index, factory: str) -> faiss.Index:
    """A GPU copy of ``index`` when GPU FAISS is installed and supports the type; else ``index``."""
    if "HNSW" in factory or gpu_count() == 0:
        return index
    try:
        return faiss.index_cpu_to_all_gpus(index)
    except (RuntimeError, AttributeError) as e:  # type not supported on GPU: stay on the CPU
        log.warning("GPU FAISS cannot hold %s (%s); searching on the CPU", factory, e)
        return index
