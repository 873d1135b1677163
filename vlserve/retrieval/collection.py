"""A set of embeddings with int64 ids: an exact full-dimension store plus a search index.

* ``full``: ``IndexIDMap2(IndexFlatIP(D))``, the exact vectors, used to rerank, to look up an
  item's embedding and to rebuild. It always supports deletion.
* ``search``: the factory index over the first ``coarse_dims`` dimensions (the Matryoshka prefix).
  When the factory is ``Flat`` and there is no funnel, the full store is the search index.

Index types that cannot delete in place (HNSW) keep deleted vectors in ``search``; they are dropped
at rerank time because the full store no longer has them, and searches over-fetch by that count.
Files are saved atomically, full store first: after a crash each file is whole, and the store
reconciles ids against the metadata database when it opens (``ImageTextIndex.reconcile``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import faiss
import numpy as np

from vlserve.errors import InvalidInput
from vlserve.matryoshka import truncate
from vlserve.retrieval import factory as fx
from vlserve.retrieval.fsutil import atomic_write
from vlserve.retrieval.funnel import FunnelSearch

log = logging.getLogger("vlserve.retrieval")


def _read_idmap(path: Path) -> faiss.IndexIDMap2:
    index = faiss.read_index(str(path))
    if not isinstance(index, faiss.IndexIDMap2):
        raise InvalidInput(f"{path}: not a vlserve index file (expected an IndexIDMap2, got {type(index).__name__})")
    return index


class VectorCollection:
    def __init__(self, name: str, dim: int, coarse_dims: int, factory: str | None = None,
                 search_params: str = "") -> None:
        self.name = name
        self.dim = dim
        self.coarse_dims = coarse_dims
        self.factory = factory
        self.search_params = search_params
        self.full: faiss.IndexIDMap2 = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._search: faiss.IndexIDMap2 | None = None  # None: not built yet, or the full store is used
        self._sorted_ids: np.ndarray | None = None
        self._device_index: faiss.Index | None = None

    # ---- shape -------------------------------------------------------------------------------------
    @property
    def built(self) -> bool:
        return self.factory is not None

    @property
    def separate_search(self) -> bool:
        return self.factory is not None and not (self.factory == "Flat" and self.coarse_dims == self.dim)

    @property
    def search_index(self) -> faiss.Index:
        return self._search if self._search is not None else self.full

    @property
    def ntotal(self) -> int:
        return int(self.full.ntotal)

    @property
    def dead(self) -> int:
        """Vectors still in the search index whose items were deleted (HNSW cannot delete)."""
        return max(0, int(self.search_index.ntotal) - self.ntotal)

    def ids(self) -> np.ndarray:
        if self._sorted_ids is None:
            self._sorted_ids = np.sort(faiss.vector_to_array(self.full.id_map).astype(np.int64))
        return self._sorted_ids

    def has(self, ids: np.ndarray) -> np.ndarray:
        known = self.ids()
        ids = np.asarray(ids, dtype=np.int64)
        if not len(known):
            return np.zeros(len(ids), bool)
        pos = np.clip(np.searchsorted(known, ids), 0, len(known) - 1)
        return known[pos] == ids

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Full-dimension vectors of ``ids`` (all must exist)."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids):
            return np.zeros((0, self.dim), np.float32)
        return self.full.reconstruct_batch(ids)

    # ---- mutation ----------------------------------------------------------------------------------
    def build(self, factory: str, sample: np.ndarray) -> None:
        """Create (and train on ``sample``) the search index; only before the first add."""
        self.factory = factory
        self.search_params = self.search_params or fx.default_search_params(factory)
        if self.separate_search:
            index = fx.new_index(factory, self.coarse_dims)
            fx.train(index, truncate(sample, self.coarse_dims), factory)
            self._search = index
        self._changed()

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> int:
        """Add vectors whose ids are not present yet (idempotent); returns how many were added."""
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        keep = ~self.has(ids)
        _, first = np.unique(ids, return_index=True)
        unique = np.zeros(len(ids), bool)
        unique[first] = True
        keep &= unique
        if not keep.any():
            return 0
        assert self.built, "build() the collection before adding"
        ids, vectors = ids[keep], vectors[keep]
        self.full.add_with_ids(vectors, ids)
        if self._search is not None:
            in_search = self._search_has(ids)
            if (~in_search).any():
                self._search.add_with_ids(np.ascontiguousarray(truncate(vectors[~in_search], self.coarse_dims)),
                                          ids[~in_search])
        self._changed()
        return int(keep.sum())

    def _search_has(self, ids: np.ndarray) -> np.ndarray:
        """Ids already in a separate search index (after a crash between the two saves)."""
        assert self._search is not None
        if self._search.ntotal == self.full.ntotal - len(ids):
            return np.zeros(len(ids), bool)
        present = faiss.vector_to_array(self._search.id_map)
        return np.isin(ids, present)

    def remove(self, ids: np.ndarray) -> int:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids):
            return 0
        n = int(self.full.remove_ids(faiss.IDSelectorBatch(ids)))
        if self._search is not None:
            try:
                self._search.remove_ids(faiss.IDSelectorBatch(ids))
            except RuntimeError:  # HNSW: dropped at rerank time instead
                log.info("%s index %s cannot delete in place; %d deleted ids are filtered at query time",
                         self.name, self.factory, n)
        self._changed()
        return n

    def _changed(self) -> None:
        self._sorted_ids = None
        self._device_index = None

    # ---- search ------------------------------------------------------------------------------------
    def funnel(self) -> FunnelSearch:
        index = self.search_index
        if self._device_index is None:
            fx.set_search_params(index, self.search_params)
            self._device_index = fx.to_search_device(index, self.factory or "Flat")
        return FunnelSearch(self._device_index, self.vectors, self.coarse_dims, self.dim,
                            exact=not self.separate_search, alive=self.has if self.dead else None)

    def search(self, queries: np.ndarray, k: int, dimensions: int | None = None,
               shortlist: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids); over-fetches by the number of dead vectors so k live ones come back."""
        if not self.built or self.ntotal == 0:
            return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
        extra = self.dead
        if shortlist is not None:
            shortlist += extra
        elif extra:
            shortlist = max(200, 4 * k) + extra
        return self.funnel().search(queries, k, dimensions, shortlist)

    def search_subset(self, queries: np.ndarray, subset: np.ndarray, k: int,
                      dimensions: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k restricted to ``subset`` ids (used for selective metadata filters)."""
        subset = np.asarray(subset, dtype=np.int64)
        subset = subset[self.has(subset)]
        cands = np.broadcast_to(subset, (len(queries), len(subset)))
        return FunnelSearch(self.full, self.vectors, self.dim, self.dim).rerank(
            queries, cands, k, dimensions or self.dim)

    # ---- persistence -------------------------------------------------------------------------------
    def paths(self, folder: Path) -> tuple[Path, Path]:
        return folder / f"{self.name}.full.faiss", folder / f"{self.name}.faiss"

    def save(self, folder: Path) -> None:
        full_path, search_path = self.paths(folder)
        atomic_write(full_path, lambda tmp: faiss.write_index(self.full, tmp))
        if self._search is not None:
            search = self._search
            atomic_write(search_path, lambda tmp: faiss.write_index(search, tmp))

    @classmethod
    def load(cls, folder: Path, name: str, dim: int, coarse_dims: int, factory: str | None,
             search_params: str) -> VectorCollection:
        col = cls(name, dim, coarse_dims, factory, search_params)
        full_path, search_path = col.paths(folder)
        if full_path.exists():
            col.full = _read_idmap(full_path)
        if col.separate_search:
            if search_path.exists():
                col._search = _read_idmap(search_path)
            elif col.ntotal:  # built but its search index was never saved: rebuild it from the exact store
                col.rebuild_search()
            else:
                col.factory = None
        return col

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of everything in the exact store, in insertion order."""
        ids = faiss.vector_to_array(self.full.id_map).astype(np.int64)
        return ids, self.full.index.reconstruct_n(0, self.full.ntotal) if len(ids) else \
            np.zeros((0, self.dim), np.float32)

    def rebuild_search(self, factory: str | None = None) -> None:
        """Recreate the search index from the exact store (new factory, or repair after a crash)."""
        ids, vecs = self.all_vectors()
        factory = factory or self.factory or fx.choose_factory(len(ids), self.coarse_dims)
        if factory != self.factory:
            self.search_params = ""
        rng = np.random.default_rng(0)
        sample = vecs[rng.permutation(len(vecs))[:fx.training_size(factory, len(vecs))]] if len(vecs) else vecs
        self._search = None
        self.build(factory, sample)
        if self._search is not None and len(ids):
            self._search.add_with_ids(np.ascontiguousarray(truncate(vecs, self.coarse_dims)), ids)
        self._changed()
