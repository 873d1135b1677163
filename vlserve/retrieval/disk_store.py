"""The rerank store on disk: exact vectors as fp16 rows in a file, for indexes too big for RAM.

The funnel reranks a shortlist of a few hundred ids per query at full dimension, so the exact store
is read at random, a few hundred rows at a time: a file serves that from the kernel's page
cache without holding 10M x 512 floats (20 GB as fp32) in the process. fp16 halves the file (1 KB
per 512-d row) and costs ~1e-3 in cosine (the vectors are unit length), well under the gaps that
decide a top-k (``benchmarks/bench_10m.py`` measures the recall cost).

Three files per collection, beside the search index::

    NAME.rerank.f16    rows, fp16 [rows, dim], append-only: a row is never rewritten
    NAME.rerank.ids    the int64 id of each row, append-only, same order
    NAME.rerank.npz    the head: committed row count, dim, and the tombstones (deleted rows)

Appends go to the end of the two row files at once. ``save`` fsyncs them, then replaces the head
atomically (:func:`~vlserve.retrieval.fsutil.atomic_write`): the head is the commit. After a crash
each file is whole: the head is old or new, and rows past its count (an add that was not saved, or a
torn write) are ignored and cut off at the next append; the metadata database then re-merges what is
missing (``ImageTextIndex.reconcile``). A reader that opened the store keeps seeing its rows, since
committed bytes never change. Deleting marks the row dead (a tombstone); re-adding a deleted id
appends a new row. The dead rows' bytes stay in the file until the collection is rewritten.

Reads: lookups ``pread`` each row (1 KB at 512 dims) from a descriptor advised
``POSIX_FADV_RANDOM`` (no read-ahead), rather than going through an ``mmap``: on Linux 6.x with
large page-cache folios (ext4, xfs) a fault on a file mapping maps the whole folio, so each row read
through a map added ~2 MB to the process's resident set (measured: 200 random rows, 380 MB), and a
server's RSS grew to the size of the file. With ``pread`` the hot rows live in the kernel's shared,
reclaimable page cache and the process holds only the ids and their sorted index (~25 bytes a row).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vlserve.errors import InvalidInput
from vlserve.retrieval.fsutil import atomic_write
from vlserve.retrieval.idset import new_ids

ROW_DTYPE = np.dtype(np.float16)


class DiskStore:
    """Exact vectors with int64 ids in an fp16 row file on disk, read at random: the same operations
    :class:`~vlserve.retrieval.collection.VectorCollection` needs of its in-RAM store."""

    def __init__(self, folder: Path, name: str, dim: int) -> None:
        self.folder = Path(folder)
        self.name = name
        self.dim = dim
        self._row_ids = np.zeros(0, np.int64)  # id of every row (dead ones too), insertion order
        self._live = np.zeros(0, bool)
        self._sorted_ids = np.zeros(0, np.int64)  # live ids, sorted, and the row holding each
        self._sorted_rows = np.zeros(0, np.int64)
        self._fd: int | None = None

    # ---- files -------------------------------------------------------------------------------------
    @property
    def rows_path(self) -> Path:
        return self.folder / f"{self.name}.rerank.f16"

    @property
    def ids_path(self) -> Path:
        return self.folder / f"{self.name}.rerank.ids"

    @property
    def head_path(self) -> Path:
        return self.folder / f"{self.name}.rerank.npz"

    @property
    def row_bytes(self) -> int:
        return self.dim * ROW_DTYPE.itemsize

    @classmethod
    def open(cls, folder: Path, name: str, dim: int) -> DiskStore:
        """The store as last saved (empty if it never was); unsaved appended rows are ignored."""
        store = cls(folder, name, dim)
        if not store.head_path.exists():
            return store
        with np.load(store.head_path) as head:
            rows, file_dim, dead = int(head["rows"]), int(head["dim"]), head["dead_rows"].astype(np.int64)
        if file_dim != dim:
            raise InvalidInput(f"{store.head_path}: rerank store holds {file_dim}-d rows, the index says {dim}")
        have_rows = store.rows_path.stat().st_size // store.row_bytes if store.rows_path.exists() else 0
        have_ids = store.ids_path.stat().st_size // 8 if store.ids_path.exists() else 0
        if min(have_rows, have_ids) < rows:
            raise InvalidInput(f"{store.folder}: rerank store {name} is short of its head ({have_rows} rows, "
                               f"{have_ids} ids on disk, {rows} committed): the files were truncated")
        store._row_ids = np.fromfile(store.ids_path, np.int64, count=rows)
        store._live = np.ones(rows, bool)
        store._live[dead] = False
        store._index_live()
        return store

    def _index_live(self) -> None:
        rows = np.flatnonzero(self._live)
        order = np.argsort(self._row_ids[rows], kind="stable")
        self._sorted_ids, self._sorted_rows = self._row_ids[rows][order], rows[order]

    def _trim_uncommitted(self) -> None:
        """Cut bytes past the rows this store knows (an add that was never saved, by a process that
        crashed, or a torn write) so the two files line up again before appending."""
        rows = len(self._row_ids)
        for path, size in ((self.rows_path, rows * self.row_bytes), (self.ids_path, rows * 8)):
            if path.exists() and path.stat().st_size != size:
                os.truncate(path, size)

    def _reader(self) -> int:
        """A read descriptor on the row file, advised for random access (appends are seen through it)."""
        if self._fd is None:
            self._fd = os.open(self.rows_path, os.O_RDONLY)
            os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_RANDOM)
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()

    # ---- reading -----------------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return len(self._sorted_ids)

    @property
    def dead_rows(self) -> int:
        """Rows whose ids were deleted (their bytes are still in the file)."""
        return int(len(self._live) - self._live.sum())

    def ids(self) -> np.ndarray:
        """Live ids, sorted."""
        return self._sorted_ids

    def has(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        if not len(self._sorted_ids):
            return np.zeros(len(ids), bool)
        pos = np.clip(np.searchsorted(self._sorted_ids, ids), 0, len(self._sorted_ids) - 1)
        return self._sorted_ids[pos] == ids

    def _rows_of(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        if not self.has(ids).all():
            missing = ids[~self.has(ids)]
            raise KeyError(f"ids not in the rerank store: {missing[:5].tolist()}")
        return self._sorted_rows[np.searchsorted(self._sorted_ids, ids)]

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """float32 [len(ids), dim] of ``ids`` (all must be live), read in file order."""
        rows = self._rows_of(ids)
        if not len(rows):
            return np.zeros((0, self.dim), np.float32)
        fd, size = self._reader(), self.row_bytes
        order = np.argsort(rows)  # in file order
        raw = b"".join([os.pread(fd, size, int(r) * size) for r in rows[order]])
        if len(raw) != len(rows) * size:
            raise OSError(f"{self.rows_path}: short read (the file is shorter than its rows)")
        out = np.empty((len(rows), self.dim), np.float32)
        out[order] = np.frombuffer(raw, ROW_DTYPE).reshape(len(rows), self.dim)
        return out

    def iter_vectors(self, chunk: int = 100_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, float32 vectors) of the live rows in insertion order, ``chunk`` rows of the file at a time."""
        for start in range(0, len(self._row_ids), chunk):
            stop = min(len(self._row_ids), start + chunk)
            live = self._live[start:stop]
            if live.any():
                block = np.fromfile(self.rows_path, ROW_DTYPE, count=(stop - start) * self.dim,
                                    offset=start * self.row_bytes).reshape(-1, self.dim)
                yield self._row_ids[start:stop][live], block[live].astype(np.float32)

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        parts = list(self.iter_vectors())
        if not parts:
            return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def insertion_ids(self) -> np.ndarray:
        """Live ids in insertion order."""
        return self._row_ids[self._live]

    # ---- writing -----------------------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> int:
        """Append the rows of ids not present yet (idempotent; the first of repeated ids wins)."""
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape != (len(ids), self.dim):
            raise InvalidInput(f"rerank store {self.name}: expected [{len(ids)}, {self.dim}] vectors, "
                               f"got {vectors.shape}")
        keep = new_ids(ids, self.has)
        if not keep.any():
            return 0
        ids, rows16 = ids[keep], np.ascontiguousarray(vectors[keep], dtype=ROW_DTYPE)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._trim_uncommitted()
        with open(self.rows_path, "ab") as f:
            f.write(rows16.tobytes())
        with open(self.ids_path, "ab") as f:
            f.write(ids.tobytes())
        start = len(self._row_ids)
        new_rows = np.arange(start, start + len(ids), dtype=np.int64)
        self._row_ids = np.concatenate([self._row_ids, ids])
        self._live = np.concatenate([self._live, np.ones(len(ids), bool)])
        order = np.argsort(ids, kind="stable")
        pos = np.searchsorted(self._sorted_ids, ids[order])
        self._sorted_ids = np.insert(self._sorted_ids, pos, ids[order])
        self._sorted_rows = np.insert(self._sorted_rows, pos, new_rows[order])
        return len(ids)

    def remove(self, ids: np.ndarray) -> int:
        """Tombstone the rows of ``ids``; returns how many were live."""
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        ids = ids[self.has(ids)]
        if not len(ids):
            return 0
        pos = np.searchsorted(self._sorted_ids, ids)
        self._live[self._sorted_rows[pos]] = False
        self._sorted_ids = np.delete(self._sorted_ids, pos)
        self._sorted_rows = np.delete(self._sorted_rows, pos)
        return len(ids)

    def save(self) -> None:
        """Make the appended rows durable, then commit them and the tombstones by replacing the head."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for path in (self.rows_path, self.ids_path):
            if not path.exists():
                path.touch()
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        rows, dead = len(self._row_ids), np.flatnonzero(~self._live).astype(np.int64)

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, rows=np.int64(rows), dim=np.int64(self.dim), dead_rows=dead)

        atomic_write(self.head_path, write)
