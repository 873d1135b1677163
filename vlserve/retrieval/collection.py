"""A set of embeddings with int64 ids: an exact full-dimension store plus a search index.

* ``store``: the exact vectors (in RAM: ``full``, an ``IndexIDMap2(IndexFlatIP(D))``), used to rerank, to look up an
  item's embedding and to rebuild. It always supports deletion.
* ``search``: the factory index over the first ``coarse_dims`` dimensions (the Matryoshka prefix).
  When the factory is ``Flat`` and there is no funnel, the full store is the search index.

Index types that cannot delete in place (HNSW) keep deleted vectors in ``search``; they are dropped
at rerank time because the full store no longer has them, and searches over-fetch by that count.
Files are saved atomically, full store first: after a crash each file is whole, and the store
reconciles ids against the metadata database when it opens (``ImageTextIndex.reconcile``).

The exact store lives in RAM (``rerank_store="ram"``, the default) or, for indexes too big for RAM,
in an fp16 file read at random (``"disk-fp16"``, :class:`~vlserve.retrieval.disk_store.DiskStore`);
with the disk store the search index is always separate (a ``Flat`` one holds its own copy).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np

from vlserve.errors import InvalidInput
from vlserve.matryoshka import truncate
from vlserve.retrieval import factory as fx
from vlserve.retrieval.disk_store import DiskStore
from vlserve.retrieval.fsutil import atomic_write
from vlserve.retrieval.funnel import FunnelSearch
from vlserve.retrieval.idset import new_ids

log = logging.getLogger("vlserve.retrieval")
RERANK_STORES = ("ram", "disk-fp16")


def _read_idmap(path: Path) -> faiss.IndexIDMap2:
    index = faiss.read_index(str(path))
    if not isinstance(index, faiss.IndexIDMap2):
        raise InvalidInput(f"{path}: not a vlserve index file (expected an IndexIDMap2, got {type(index).__name__})")
    return index


class RamStore:
    """The exact store in RAM: an ``IndexIDMap2(IndexFlatIP(D))`` (also a search index when Flat)."""

    def __init__(self, dim: int, full: faiss.IndexIDMap2 | None = None) -> None:
        self.dim = dim
        self.full = full if full is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._sorted: np.ndarray | None = None

    @property
    def ntotal(self) -> int:
        return int(self.full.ntotal)

    def insertion_ids(self) -> np.ndarray:
        return faiss.vector_to_array(self.full.id_map).astype(np.int64)

    def ids(self) -> np.ndarray:
        if self._sorted is None:
            self._sorted = np.sort(self.insertion_ids())
        return self._sorted

    def has(self, ids: np.ndarray) -> np.ndarray:
        known = self.ids()
        ids = np.asarray(ids, dtype=np.int64)
        if not len(known):
            return np.zeros(len(ids), bool)
        pos = np.clip(np.searchsorted(known, ids), 0, len(known) - 1)
        return known[pos] == ids

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        return self.full.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64))

    def iter_vectors(self, chunk: int = 100_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        ids = self.insertion_ids()
        for start in range(0, len(ids), chunk):
            stop = min(len(ids), start + chunk)
            yield ids[start:stop], self.full.index.reconstruct_n(start, stop - start)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> int:
        """Add rows whose ids the caller checked are new."""
        self.full.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, np.int64))
        self._sorted = None
        return len(ids)

    def remove(self, ids: np.ndarray) -> int:
        self._sorted = None
        return int(self.full.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64))))


class VectorCollection:
    def __init__(self, name: str, dim: int, coarse_dims: int, factory: str | None = None,
                 search_params: str = "", rerank_store: str = "ram", folder: Path | None = None) -> None:
        """``rerank_store="disk-fp16"`` keeps the exact vectors in files under ``folder`` (appends are
        written there at once; :meth:`save` commits them)."""
        if rerank_store not in RERANK_STORES:
            raise InvalidInput(f"rerank store must be one of {', '.join(RERANK_STORES)}, got {rerank_store!r}")
        if rerank_store != "ram" and folder is None:
            raise InvalidInput(f"a {rerank_store} rerank store needs the index folder")
        self.name = name
        self.dim = dim
        self.coarse_dims = coarse_dims
        self.factory = factory
        self.search_params = search_params
        self.rerank_store = rerank_store
        self.store: RamStore | DiskStore = (RamStore(dim) if rerank_store == "ram" else
                                              DiskStore.open(Path(folder or "."), name, dim))
        self._search: faiss.IndexIDMap2 | None = None  # None: not built yet, or the full store is used
        self._device_index: faiss.Index | None = None

    # ---- shape -------------------------------------------------------------------------------------
    @property
    def full(self) -> faiss.IndexIDMap2:
        """The in-RAM exact store (``rerank_store="ram"`` only)."""
        if not isinstance(self.store, RamStore):
            raise AttributeError(f"collection {self.name} keeps its exact vectors in a {self.rerank_store} store")
        return self.store.full

    @property
    def built(self) -> bool:
        return self.factory is not None

    @property
    def separate_search(self) -> bool:
        return self.factory is not None and not (self.factory == "Flat" and self.coarse_dims == self.dim
                                                 and self.rerank_store == "ram")

    @property
    def search_index(self) -> faiss.Index:
        return self._search if self._search is not None else self.full

    @property
    def ntotal(self) -> int:
        return int(self.store.ntotal)

    @property
    def dead(self) -> int:
        """Vectors still in the search index whose items were deleted (HNSW cannot delete)."""
        if not self.separate_search or self._search is None:
            return 0
        return max(0, int(self._search.ntotal) - self.ntotal)

    def ids(self) -> np.ndarray:
        return self.store.ids()

    def has(self, ids: np.ndarray) -> np.ndarray:
        return self.store.has(ids)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Full-dimension vectors of ``ids`` (all must exist), float32."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids):
            return np.zeros((0, self.dim), np.float32)
        return self.store.vectors(ids)

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
        keep = new_ids(ids, self.has)
        if not keep.any():
            return 0
        assert self.built, "build() the collection before adding"
        ids, vectors = ids[keep], vectors[keep]
        self.store.add(ids, vectors)
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
        if self._search.ntotal == self.store.ntotal - len(ids):
            return np.zeros(len(ids), bool)
        present = faiss.vector_to_array(self._search.id_map)
        return np.isin(ids, present)

    def remove(self, ids: np.ndarray) -> int:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids):
            return 0
        n = int(self.store.remove(ids))
        if self._search is not None:
            try:
                self._search.remove_ids(faiss.IDSelectorBatch(ids))
            except RuntimeError:  # HNSW: dropped at rerank time instead
                log.info("%s index %s cannot delete in place; %d deleted ids are filtered at query time "
                         "(`vlserve index compact` rebuilds it without them)", self.name, self.factory, n)
        self._changed()
        return n

    def close(self) -> None:
        """Release the disk store's file descriptor (nothing to do in RAM)."""
        if isinstance(self.store, DiskStore):
            self.store.close()

    def _changed(self) -> None:
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
        return FunnelSearch(None, self.vectors, self.dim, self.dim).rerank(
            queries, cands, k, dimensions or self.dim)

    # ---- persistence -------------------------------------------------------------------------------
    def paths(self, folder: Path) -> tuple[Path, Path]:
        """The in-RAM exact store's file and the search index's file."""
        return folder / f"{self.name}.full.faiss", folder / f"{self.name}.faiss"

    def save(self, folder: Path) -> None:
        """Exact store first, then the search index, each atomically."""
        full_path, search_path = self.paths(folder)
        if isinstance(self.store, DiskStore):
            if Path(folder).resolve() != self.store.folder.resolve():
                raise InvalidInput(f"collection {self.name}: a disk rerank store saves in place "
                                   f"({self.store.folder}), not to {folder}")
            self.store.save()
        else:
            full = self.store.full
            atomic_write(full_path, lambda tmp: faiss.write_index(full, tmp))
        if self._search is not None:
            search = self._search
            atomic_write(search_path, lambda tmp: faiss.write_index(search, tmp))

    @classmethod
    def load(cls, folder: Path, name: str, dim: int, coarse_dims: int, factory: str | None,
             search_params: str, rerank_store: str = "ram") -> VectorCollection:
        col = cls(name, dim, coarse_dims, factory, search_params, rerank_store, folder)
        full_path, search_path = col.paths(folder)
        if rerank_store == "ram" and full_path.exists():
            col.store = RamStore(dim, _read_idmap(full_path))
        if col.separate_search:
            if search_path.exists():
                col._search = _read_idmap(search_path)
            elif col.ntotal:  # built but its search index was never saved: rebuild it from the exact store
                col.rebuild_search()
            else:
                col.factory = None
        return col

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of everything in the exact store, in insertion order (all in RAM: for a big
        disk store use :meth:`iter_vectors`)."""
        parts = list(self.store.iter_vectors())
        if not parts:
            return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def iter_vectors(self, chunk: int = 100_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, float32 vectors) of the exact store in insertion order, ``chunk`` at a time."""
        return self.store.iter_vectors(chunk)

    def rebuild_search(self, factory: str | None = None) -> None:
        """Recreate the search index from the exact store (new factory, compaction of deleted vectors an
        HNSW index still holds, or repair after a crash), streaming the store in chunks."""
        ids = self.store.insertion_ids()
        factory = factory or self.factory or fx.choose_factory(len(ids), self.coarse_dims)
        if factory != self.factory:
            self.search_params = ""
        rng = np.random.default_rng(0)
        picked = rng.permutation(len(ids))[:fx.training_size(factory, len(ids))] if len(ids) else ids
        sample = self.vectors(ids[picked]) if len(ids) else np.zeros((0, self.dim), np.float32)
        self._search = None
        self.build(factory, sample)
        if self._search is not None:
            for chunk_ids, vecs in self.store.iter_vectors():
                self._search.add_with_ids(np.ascontiguousarray(truncate(vecs, self.coarse_dims)), chunk_ids)
        self._changed()
