"""Matryoshka funnel search (Kusupati et al. 2022, "adaptive retrieval").

A Matryoshka model's first ``d`` dimensions, re-normalised, are an embedding of their own. The
funnel searches a cheap index over that prefix for a shortlist of ``s`` candidates, then reranks
the shortlist exactly with the full-dimension vectors::

    shortlist = top_s( <q[:d], x[:d]> / (|q[:d]| |x[:d]|) )           # coarse index, d << D
    result    = top_k over shortlist of cos(q[:D'], x[:D'])           # exact, D' = dimensions

A scan at d = D/8 is ~8x cheaper than at D, and the rerank costs s dot products per query, so
recall@k stays that of the full model as long as the true top-k lands in the shortlist.
"""

from __future__ import annotations

from collections.abc import Callable

import faiss
import numpy as np

from vlserve.matryoshka import truncate

DEFAULT_SHORTLIST = 200
EXACT_SUBSET_MAX = 20_000  # a metadata filter with at most this many matches is answered exactly (every backend)
Lookup = Callable[[np.ndarray], np.ndarray]  # ids [n] -> full vectors [n, D]


def shortlist_size(k: int, requested: int | None, ntotal: int) -> int:
    """The shortlist length: the request's, else max(200, 4k); never more than the index holds."""
    s = requested if requested is not None else max(DEFAULT_SHORTLIST, 4 * k)
    return max(1, min(max(s, k), ntotal))


class FunnelSearch:
    """Shortlist on ``search_index`` (over the first ``coarse_dims`` dims), rerank at full dimension.

    ``lookup`` returns full vectors for ids (an ``IndexIDMap2`` over a flat store, see
    :class:`~vlserve.retrieval.collection.VectorCollection`). With ``coarse_dims == dim`` and no
    ``dimensions`` below ``dim`` the rerank is skipped when ``exact`` says the index is exact.
    """

    def __init__(self, search_index: faiss.Index | None, lookup: Lookup, coarse_dims: int, dim: int,
                 exact: bool = False, alive: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.index = search_index
        self.lookup = lookup
        self.coarse_dims = coarse_dims
        self.dim = dim
        self.exact = exact
        self.alive = alive

    def search(self, queries: np.ndarray, k: int, dimensions: int | None = None,
               shortlist: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores, ids) per query, ``-1`` ids where fewer exist. ``queries``: [B, dim] normalised."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        assert self.index is not None, "a rerank-only FunnelSearch has no search index"
        dims = dimensions or self.dim
        ntotal = int(self.index.ntotal)
        if ntotal == 0:
            return np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        if self.exact and dims == self.dim and self.coarse_dims == self.dim:
            return self.index.search(q, k)
        s = shortlist_size(k, shortlist, ntotal)
        _, cand = self.index.search(np.ascontiguousarray(truncate(q, self.coarse_dims)), s)
        return self.rerank(q, cand, k, dims)

    def rerank(self, queries: np.ndarray, candidates: np.ndarray, k: int, dims: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact cosine at ``dims`` of each query against its own candidate ids ([B, s], -1 = none)."""
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        qd = truncate(queries, dims)
        for row, (qv, cand) in enumerate(zip(qd, candidates, strict=True)):
            cand = cand[cand >= 0]
            if self.alive is not None and len(cand):
                cand = cand[self.alive(cand)]
            if not len(cand):
                continue
            sims = truncate(self.lookup(cand), dims) @ qv
            top = np.argsort(-sims, kind="stable")[:k]
            scores[row, :len(top)] = sims[top]
            ids[row, :len(top)] = cand[top]
        return scores, ids
