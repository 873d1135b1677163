"""A vector collection on Milvus: the :class:`~vlserve.retrieval.collection.VectorCollection` API over
one Milvus collection, for indexes that outgrow one process (``pymilvus``'s ``MilvusClient``).

The URI picks the deployment: a path ending in ``.db`` runs **Milvus Lite** in-process (the same
engine and client API, for tests and laptops); ``http://host:19530`` is a Milvus server or cluster,
with the token from ``VLSERVE_MILVUS_TOKEN``. One Milvus collection holds one vlserve collection
(``images`` or ``texts`` of an index)::

    id      INT64 primary key        the item's content id (re-adding it is a no-op: idempotent builds)
    full    FLOAT_VECTOR(D)          the exact L2-normalised vector: rerank, lookups, rebuilds
    coarse  FLOAT_VECTOR(d)          the Matryoshka prefix, re-normalised (only when d < D): the shortlist
    source  VARCHAR                  the item's source, caption (its first caption, "" when none) and user
    caption VARCHAR                  metadata (a caption's row carries its item's): ``--where`` filters run
    meta    JSON                     inside Milvus as boolean expressions (``meta["colour"] == "red"``)

The collection also carries the index's binding as collection properties (``vlserve.model``,
``vlserve.fingerprint``, ``vlserve.dim``, ``vlserve.index``, ``vlserve.created_at``): a process opening
it from another host checks them against its manifest, so a query from another model is refused
exactly as with FAISS, and a build never drops a collection that belongs to another index.
Collections are created with Strong consistency: a search sees every write acknowledged before it.

The Matryoshka funnel runs as with FAISS: the ANN index (from the manifest's FAISS factory string,
mapped below) sits on ``coarse``; the shortlist's ``full`` vectors are fetched by id and reranked
exactly here (faster at scale than Milvus scoring them: see ``_rerank``). ``full`` has a
FLAT index (Milvus needs one on every vector field to load a collection), so an index without a
funnel searches it exactly.

FAISS factory -> Milvus index: ``Flat`` -> FLAT; ``HNSW{M}[,Flat]`` -> HNSW (M, efConstruction 200;
``efSearch`` -> ``ef``); ``IVF{n},Flat`` -> IVF_FLAT (``nprobe``); ``IVF{n},SQ8`` -> IVF_SQ8;
``IVF{n},PQ{m}`` -> IVF_PQ on a
server (Milvus Lite has no IVF_PQ and refuses it here, naming what it has). Deletes are in place
(no dead vectors to over-fetch).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vlserve.errors import IndexModelMismatch, InvalidInput, MissingExtra, ModelUnavailable
from vlserve.matryoshka import truncate
from vlserve.retrieval.factory import default_search_params
from vlserve.retrieval.funnel import EXACT_SUBSET_MAX, FunnelSearch, shortlist_size
from vlserve.retrieval.idset import new_ids
from vlserve.retrieval.milvus_schema import MAX_TEXT, clip_text, filter_expression, milvus_index, search_params

log = logging.getLogger("vlserve.retrieval")
CHUNK = 2_000  # rows per insert / ids per "in" filter
MAX_TOPK = 16_384  # Milvus's largest search limit
LITE_OPEN_S = 300.0  # how long opening a Milvus Lite file may take (it loads the data first)
Fields = Callable[[Sequence[int]], list[dict[str, Any]]]  # ids -> [{source, caption, meta}]
_CLIENTS: dict[tuple[str, str], Any] = {}


def is_lite(uri: str) -> bool:
    return uri.endswith(".db")


def client(uri: str, token: str = "", timeout_s: float = 5.0) -> Any:
    """A cached ``MilvusClient`` for ``uri``; an unreachable server is a clear error within ``timeout_s``.
    Milvus Lite gets ``LITE_OPEN_S`` instead: its in-process server reads the whole file before it
    answers (13-17 s for 1M rows: ``milvus_open_s`` in benchmarks/results/bench_milvus.json)."""
    key = (uri, token)
    if is_lite(uri):
        timeout_s = max(timeout_s, LITE_OPEN_S)
    if key in _CLIENTS:
        return _CLIENTS[key]
    try:
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException
    except ImportError as e:
        raise MissingExtra("pymilvus", "milvus") from e
    if is_lite(uri):
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        # Milvus Lite's in-process gRPC server logs a traceback for every RPC it does not implement;
        # pymilvus's query iterator asks for AllocTimestamp first and falls back when refused
        logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
    try:
        c = MilvusClient(uri=uri, token=token, timeout=timeout_s)
        c.list_collections(timeout=timeout_s)
    except MilvusException as e:
        if is_lite(uri):
            raise ModelUnavailable(f"Milvus Lite could not open {uri} ({e.message}): is another process using it? "
                                   "Milvus Lite allows one process per .db file; serve several processes from a "
                                   "Milvus server") from None
        raise ModelUnavailable(f"Milvus at {uri} refused the connection ({e.message}): check the token "
                               "(VLSERVE_MILVUS_TOKEN, user:password or an API key) and that the server is up"
                               ) from None
    except Exception as e:  # grpc / network errors of many kinds: all mean the same to the caller
        raise ModelUnavailable(f"Milvus at {uri} is not reachable within {timeout_s:g} s ({type(e).__name__}: "
                               f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
    _CLIENTS[key] = c
    return c


def close_client(uri: str) -> None:
    """Close this process's clients of ``uri`` (releasing a Milvus Lite file for another process)."""
    for key in [k for k in _CLIENTS if k[0] == uri]:
        _CLIENTS.pop(key).close()
    if is_lite(uri):  # the in-process Lite server outlives its clients; stop it to free the file lock
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(uri)


class MilvusCollection:
    """``VectorCollection``'s interface on a Milvus collection (see the module docstring)."""

    def __init__(self, name: str, dim: int, coarse_dims: int, factory: str | None, search_params: str, uri: str,
                 collection: str, token: str = "", binding: dict[str, Any] | None = None,
                 fields: Fields | None = None) -> None:
        """``binding``: the manifest's identity (model, fingerprint, dim, index, created_at), stored as
        collection properties and checked on open; ``fields``: where an added id's scalar fields come
        from (the metadata store); without it rows get empty ones."""
        self.name, self.dim, self.coarse_dims = name, dim, coarse_dims
        self.factory, self.search_params = factory, search_params
        self.uri, self.collection = uri, collection
        self.binding = {k: str(v) for k, v in (binding or {}).items()}
        self.fields = fields
        self.client = client(uri, token)
        self.scalars = False  # does the collection hold source/caption/meta (filters inside Milvus)?
        if factory is not None:
            if not self.client.has_collection(collection):
                raise InvalidInput(f"the manifest says {name} is built, but Milvus at {uri} has no collection "
                                   f"{collection!r}: was it dropped? rebuild the index")
            self._check_schema()
            self._check_binding()
            self.client.load_collection(collection)  # a collection is "released" in a new process until loaded
        self._ids: np.ndarray | None = None
        self._count: int | None = None

    def _properties(self) -> dict[str, str]:
        props = self.client.describe_collection(self.collection).get("properties") or {}
        return {k.removeprefix("vlserve."): str(v) for k, v in props.items() if k.startswith("vlserve.")}

    def _check_binding(self) -> None:
        """Refuse a collection written for another model, or by another index of the same name."""
        have = self._properties()
        if not have or not self.binding:
            return
        if have.get("fingerprint") != self.binding.get("fingerprint"):
            raise IndexModelMismatch(
                f"Milvus collection {self.collection!r} at {self.uri} holds embeddings of model "
                f"{have.get('model')!r} (fingerprint {have.get('fingerprint')}); this index's manifest binds "
                f"{self.binding.get('model')!r} (fingerprint {self.binding.get('fingerprint')}). Embeddings of "
                "different models are not comparable: open the index that built it, or rebuild under another name")
        if have.get("created_at") != self.binding.get("created_at"):
            raise InvalidInput(
                f"Milvus collection {self.collection!r} at {self.uri} belongs to another index named "
                f"{have.get('index')!r} (created {have.get('created_at')}), not this one (created "
                f"{self.binding.get('created_at')}): give this index another name")

    def _check_schema(self) -> None:
        """The collection must hold this index's vectors: a ``full`` field of ``dim`` (and ``coarse`` of
        ``coarse_dims`` with a funnel); anything else is another index's or another model's collection."""
        fields = {f["name"]: f.get("params", {}).get("dim") for f in
                  self.client.describe_collection(self.collection)["fields"]}
        self.scalars = "meta" in fields
        want = {"full": self.dim, **({"coarse": self.coarse_dims} if self.separate_search else {})}
        for field, dim in want.items():
            if fields.get(field) != dim:
                have = f"{fields[field]}-dim {field} vectors" if fields.get(field) else f"no {field} vector field"
                raise InvalidInput(f"Milvus collection {self.collection!r} at {self.uri} holds {have}; this index "
                                   f"needs {dim} (another model's or another index's collection?)")

    # ---- shape -------------------------------------------------------------------------------------
    @property
    def built(self) -> bool:
        return self.factory is not None

    @property
    def separate_search(self) -> bool:
        return self.coarse_dims < self.dim

    @property
    def ntotal(self) -> int:
        if not self.built:
            return 0
        if self._count is None:
            rows = self.client.query(self.collection, filter="", output_fields=["count(*)"])
            self._count = int(rows[0]["count(*)"])
        return self._count

    @property
    def dead(self) -> int:
        return 0  # Milvus deletes in place

    def _iterate(self, fields: list[str], where: str = "") -> Iterator[list[dict[str, Any]]]:
        it = self.client.query_iterator(self.collection, batch_size=CHUNK, filter=where, output_fields=fields)
        try:
            while batch := it.next():
                yield batch
        finally:
            it.close()

    def ids(self) -> np.ndarray:
        if self._ids is None:
            ids = [r["id"] for batch in self._iterate(["id"]) for r in batch] if self.built else []
            self._ids = np.sort(np.asarray(ids, np.int64))
        return self._ids

    def has(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        if not self.built or not len(ids):
            return np.zeros(len(ids), bool)
        present: set[int] = set()
        for start in range(0, len(ids), CHUNK):
            chunk = [int(i) for i in np.unique(ids[start:start + CHUNK])]
            present |= {r["id"] for r in self.client.query(self.collection, filter=f"id in {chunk}",
                                                           output_fields=["id"])}
        return np.fromiter((int(i) in present for i in ids), bool, len(ids))

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Full-dimension vectors of ``ids`` (all must exist), in the order given."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return np.zeros((0, self.dim), np.float32)
        found: dict[int, Any] = {}
        for start in range(0, len(ids), CHUNK):
            chunk = [int(i) for i in np.unique(ids[start:start + CHUNK])]
            for r in self.client.get(self.collection, ids=chunk, output_fields=["full"]):
                found[int(r["id"])] = r["full"]
        missing = [int(i) for i in ids if int(i) not in found]
        if missing:
            raise InvalidInput(f"{self.name}: no vector with id {missing[0]}")
        return np.asarray([found[int(i)] for i in ids], dtype=np.float32)

    # ---- mutation ----------------------------------------------------------------------------------
    def build(self, factory: str, sample: np.ndarray) -> None:
        """Create the Milvus collection and its indexes (Milvus trains IVF itself as data arrives)."""
        from pymilvus import DataType, MilvusClient

        index, _ = milvus_index(factory, is_lite(self.uri))
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                            description=f"vlserve {self.name} vectors")
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("full", DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field("source", DataType.VARCHAR, max_length=MAX_TEXT)
        schema.add_field("caption", DataType.VARCHAR, max_length=MAX_TEXT)
        schema.add_field("meta", DataType.JSON)
        params = self.client.prepare_index_params()
        if self.separate_search:
            schema.add_field("coarse", DataType.FLOAT_VECTOR, dim=self.coarse_dims)
            params.add_index("full", index_type="FLAT", metric_type="IP")
            params.add_index("coarse", metric_type="IP", **index)
        else:
            params.add_index("full", metric_type="IP", **index)
        if self.client.has_collection(self.collection):
            # left by a build of this index that stopped before its manifest was saved; another
            # index's collection (other binding) is refused, never dropped
            self._check_binding()
            self.client.drop_collection(self.collection)
        from pymilvus.exceptions import MilvusException

        try:
            self.client.create_collection(self.collection, schema=schema, index_params=params,
                                          consistency_level="Strong")
        except MilvusException as e:
            if "multiple vector fields" not in e.message:
                raise
            raise InvalidInput(f"Milvus at {self.uri} keeps one vector field per collection (a server before "
                               "2.4); a Matryoshka funnel index needs two (the prefix to search, the full vector "
                               "to rerank): upgrade the server, or build with --coarse-dims none") from None
        if self.binding:
            self.client.alter_collection_properties(
                self.collection, properties={f"vlserve.{k}": v for k, v in self.binding.items()})
        self.scalars = True
        self.factory = factory
        self.search_params = self.search_params or default_search_params(factory)
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
        coarse = truncate(vectors, self.coarse_dims) if self.separate_search else None
        for start in range(0, len(ids), CHUNK):
            stop = min(start + CHUNK, len(ids))
            scalars = self._scalar_rows(ids[start:stop]) if self.scalars else [{}] * (stop - start)
            rows = []
            for j, extra in zip(range(start, stop), scalars, strict=True):
                row: dict[str, Any] = {"id": int(ids[j]), "full": vectors[j], **extra}
                if coarse is not None:
                    row["coarse"] = coarse[j]
                rows.append(row)
            self.client.insert(self.collection, rows)
        self._changed()
        return int(keep.sum())

    def _scalar_rows(self, ids: np.ndarray) -> list[dict[str, Any]]:
        got = self.fields([int(i) for i in ids]) if self.fields else [{} for _ in ids]
        return [{"source": clip_text(str(f.get("source") or "")), "caption": clip_text(str(f.get("caption") or "")),
                 "meta": f.get("meta") or {}} for f in got]

    def remove(self, ids: np.ndarray) -> int:
        ids = np.asarray(ids, dtype=np.int64)
        if not self.built or not len(ids):
            return 0
        present = np.unique(ids[self.has(ids)])
        for start in range(0, len(present), CHUNK):
            self.client.delete(self.collection, ids=[int(i) for i in present[start:start + CHUNK]])
        self._changed()
        return len(present)

    def _changed(self) -> None:
        self._ids = None
        self._count = None

    # ---- search ------------------------------------------------------------------------------------
    def _ann(self, queries: np.ndarray, field: str, limit: int, where: str = "") -> tuple[np.ndarray, np.ndarray]:
        assert self.factory is not None
        _, base = milvus_index(self.factory, is_lite(self.uri))
        index_params = search_params(self.search_params, base) if field == "coarse" or not self.separate_search \
            else {}
        limit = min(limit, MAX_TOPK)
        res = self.client.search(self.collection, data=[q for q in queries], anns_field=field, limit=limit,
                                 filter=where, search_params={"metric_type": "IP", "params": index_params},
                                 output_fields=["id"])
        scores = np.full((len(queries), limit), -np.inf, np.float32)
        ids = np.full((len(queries), limit), -1, np.int64)
        for row, hits in enumerate(res):
            for j, h in enumerate(hits[:limit]):
                scores[row, j], ids[row, j] = h["distance"], h["id"]
        return scores, ids

    def search(self, queries: np.ndarray, k: int, dimensions: int | None = None,
               shortlist: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids): the funnel (shortlist on ``coarse``, exact rerank) or ``full`` directly."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        n = self.ntotal
        if not self.built or n == 0:
            return np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        dims = dimensions or self.dim
        if not self.separate_search and dims == self.dim:
            return self._ann(q, "full", k)  # fewer than k stored: the rest stays -1 / -inf
        field = "coarse" if self.separate_search else "full"
        s = shortlist_size(k, shortlist, n)
        _, cand = self._ann(np.ascontiguousarray(truncate(q, self.coarse_dims)), field, s)
        return self._rerank(q, cand, k, dims)

    def _rerank(self, q: np.ndarray, cand: np.ndarray, k: int, dims: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact cosine of each query against its shortlist, on the shortlist's ``full`` vectors fetched
        by id (re-normalised at a Matryoshka ``dims``). Measured against Milvus scoring the shortlist
        itself (a search on ``full`` restricted to its ids): 1.47x faster in Milvus at 30k rows, but
        0.57x at 1M (the id filter is evaluated over every row), so fetching wins where a funnel is
        used at all (benchmarks/results/bench_milvus.json, ``milvus_rerank``)."""
        return FunnelSearch(None, self.vectors, self.coarse_dims, self.dim).rerank(q, cand, k, dims)

    def search_subset(self, queries: np.ndarray, subset: np.ndarray, k: int,
                      dimensions: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k restricted to ``subset`` ids (used for selective metadata filters)."""
        subset = np.asarray(subset, dtype=np.int64)
        subset = subset[self.has(subset)]
        cands = np.broadcast_to(subset, (len(queries), len(subset)))
        return FunnelSearch(None, self.vectors, self.dim, self.dim).rerank(queries, cands, k, dimensions or self.dim)

    def search_where(self, queries: np.ndarray, filters: Sequence[tuple[str, str, Any]], k: int,
                     dimensions: int | None = None, shortlist: int | None = None,
                     texts: bool = False) -> tuple[np.ndarray, np.ndarray] | None:
        """Top-k among the rows matching ``filters``, filtered inside Milvus; None when this collection
        or filter cannot be (no scalar fields, or a field only the metadata database has).

        A selective filter (at most ``EXACT_SUBSET_MAX`` matches, as on FAISS) is answered exactly, as the FAISS
        path answers it: the ``full`` field's FLAT index under the filter at full dimension, or the
        matching ids reranked at a Matryoshka ``dimensions``. A broad one runs the funnel with the
        filter applied to the shortlist search."""
        expr = filter_expression(filters, texts)
        if not self.scalars or expr is None:
            return None
        q = np.ascontiguousarray(queries, dtype=np.float32)
        empty = np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        if not self.built:
            return empty
        rows = self.client.query(self.collection, filter=expr, output_fields=["count(*)"])
        n = int(rows[0]["count(*)"])
        if n == 0:
            return empty
        dims = dimensions or self.dim
        if n <= EXACT_SUBSET_MAX:
            if dims == self.dim and self.separate_search:  # FLAT on full: exact, in one round trip
                return self._ann(q, "full", k, expr)
            ids = np.asarray([r["id"] for batch in self._iterate(["id"], expr) for r in batch], np.int64)
            return self.search_subset(q, ids, k, dimensions)
        field = "coarse" if self.separate_search else "full"
        s = shortlist_size(k, shortlist, n)
        _, cand = self._ann(np.ascontiguousarray(truncate(q, self.coarse_dims) if self.separate_search else q),
                            field, s, expr)
        return self._rerank(q, cand, k, dims)

    # ---- persistence -------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        if self.built:
            self.client.flush(self.collection)

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of everything in the collection."""
        ids, vecs = [], []
        if self.built:
            for batch in self._iterate(["id", "full"]):
                ids += [r["id"] for r in batch]
                vecs += [r["full"] for r in batch]
        return np.asarray(ids, np.int64), np.asarray(vecs, np.float32).reshape(-1, self.dim)

    def rebuild_search(self, factory: str | None = None) -> None:
        """Re-create the ANN index under a new factory (Milvus rebuilds it from the stored vectors)."""
        factory = factory or self.factory or "Flat"
        index, _ = milvus_index(factory, is_lite(self.uri))
        field = "coarse" if self.separate_search else "full"
        self.client.release_collection(self.collection)
        self.client.drop_index(self.collection, field)
        params = self.client.prepare_index_params()
        params.add_index(field, metric_type="IP", **index)
        self.client.create_index(self.collection, params)
        self.client.load_collection(self.collection)
        if factory != self.factory:
            self.search_params = default_search_params(factory)
        self.factory = factory

    def drop(self) -> None:
        if self.client.has_collection(self.collection):
            self.client.drop_collection(self.collection)
        self._changed()
