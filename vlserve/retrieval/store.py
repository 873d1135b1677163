"""An index on disk: ``index/NAME/`` holds the manifest, the metadata database, the FAISS files of
the image (and caption) collections, and the embedding shards written by bulk builds::

    index/NAME/manifest.json        model spec + fingerprint, dims, factory, counts (the contract)
    index/NAME/meta.sqlite          items, captions, shard checkpoint, unreadable inputs
    index/NAME/images.full.faiss    exact full-dimension vectors (rerank store), or with the manifest's
    index/NAME/images.rerank.*        rerank_store "disk-fp16": fp16 rows, ids and head (disk_store.py)
    index/NAME/images.faiss         search index over the Matryoshka prefix (when separate)
    index/NAME/texts*.faiss         the same for captions (image -> text search)
    index/NAME/shards/*.npz         embedding shards: the build's durable output, merged into FAISS

Writers (build, add, remove) hold ``.lock``. The metadata database is the source of truth for what
is in the index; FAISS files are brought in line with it by ``merge`` and ``reconcile``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vlserve.errors import InvalidInput, NotFound
from vlserve.retrieval import factory as fx
from vlserve.retrieval.collection import VectorCollection
from vlserve.retrieval.fsutil import atomic_write, remove_stale_temps
from vlserve.retrieval.manifest import IndexManifest
from vlserve.retrieval.metadata import MetadataStore

log = logging.getLogger("vlserve.retrieval")
SHARDS = "shards"


def index_folder(root: Path, name: str) -> Path:
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise InvalidInput(f"invalid index name {name!r}: use letters, digits, '-', '_' (no slashes)")
    return root / name


def write_shard_file(path: Path, image_ids: np.ndarray, image_emb: np.ndarray, text_ids: np.ndarray,
                     text_emb: np.ndarray) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, image_ids=np.asarray(image_ids, np.int64), image_emb=np.asarray(image_emb, np.float32),
                     text_ids=np.asarray(text_ids, np.int64), text_emb=np.asarray(text_emb, np.float32))
    atomic_write(path, write)


def read_shard_file(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in ("image_ids", "image_emb", "text_ids", "text_emb")}


BACKENDS = ("faiss", "milvus")


def milvus_uri(folder: Path, manifest: IndexManifest) -> str:
    """The index's Milvus URI: a server URL as given; a Lite ``.db`` path relative to the index folder."""
    uri = manifest.uri or "milvus.db"
    if "://" in uri or Path(uri).is_absolute():
        return uri
    return str(folder / uri)


def open_collection(folder: Path, m: IndexManifest, kind: str, factory: str | None,
                    search_params: str, meta: MetadataStore | None = None) -> VectorCollection | Any:
    """The ``images`` or ``texts`` collection of an index, on the manifest's backend (on Milvus, rows
    carry their item's filter fields from ``meta``, and the collection the manifest's binding)."""
    if m.backend == "faiss":
        return VectorCollection.load(folder, kind, m.dim, m.coarse_dims, factory, search_params, m.rerank_store)
    if m.backend == "milvus":
        from vlserve.retrieval.metadata import item_fields
        from vlserve.retrieval.milvus_collection import MilvusCollection
        from vlserve.retrieval.milvus_schema import collection_name
        from vlserve.settings import Settings

        token = Settings().milvus_token
        binding = {"index": m.name, "model": m.model_spec, "fingerprint": m.fingerprint, "dim": m.dim,
                   "matryoshka_dims": m.matryoshka_dims or [], "created_at": m.created_at}
        store = meta
        fields = (lambda ids: item_fields(store, ids, texts=kind == "texts")) if store is not None else None
        return MilvusCollection(kind, m.dim, m.coarse_dims, factory, search_params, milvus_uri(folder, m),
                                collection_name(m.name, kind), token.get_secret_value() if token else "",
                                binding=binding, fields=fields)
    raise InvalidInput(f"index {m.name!r}: unknown backend {m.backend!r}; known: {', '.join(BACKENDS)}")


class ImageTextIndex:
    """A model-bound image index (plus caption index) with metadata. Open with :meth:`open`."""

    def __init__(self, folder: Path, manifest: IndexManifest) -> None:
        self.folder = folder
        self.manifest = manifest
        self.meta = MetadataStore(folder)
        m = manifest
        self.images = open_collection(folder, m, "images", m.factory, m.search_params, self.meta)
        self.texts = open_collection(folder, m, "texts", m.text_factory, "", self.meta)

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def shard_dir(self) -> Path:
        return self.folder / SHARDS

    @classmethod
    def open(cls, root: Path, name: str) -> ImageTextIndex:
        folder = index_folder(root, name)
        if not folder.is_dir():
            known = sorted(p.name for p in root.iterdir() if (p / "manifest.json").is_file()) if root.is_dir() else []
            raise NotFound(f"index {name!r} not found in {root}" + (f"; indexes: {', '.join(known)}" if known
                                                                    else " (no indexes there)"))
        return cls(folder, IndexManifest.load(folder))

    @classmethod
    def create(cls, root: Path, manifest: IndexManifest) -> ImageTextIndex:
        folder = index_folder(root, manifest.name)
        folder.mkdir(parents=True, exist_ok=True)
        manifest.save(folder)
        return cls(folder, manifest)

    def close(self) -> None:
        self.meta.close()
        for col in (self.images, self.texts):
            if isinstance(col, VectorCollection):
                col.close()

    # ---- writing -----------------------------------------------------------------------------------
    def merge(self, factory: str | None = None) -> int:
        """Add the vectors of every shard not yet merged (idempotent: present ids are skipped), choose and
        train the search index on first use, save atomically. Returns how many image vectors were added."""
        pending = self.meta.unmerged_files()
        live_items, live_texts = self.meta.all_ids("items"), self.meta.all_ids("texts")
        if factory and self.images.built and factory != self.images.factory:
            log.info("rebuilding the %s search index as %s", self.name, factory)
            self.images.rebuild_search(factory)
        if not pending and self.images.built:
            self._save()
            return 0
        if not self.images.built:
            self._build_collection(self.images, "image", factory, pending, live_items)
        if not self.texts.built:
            self._build_collection(self.texts, "text", None, pending, live_texts)
        added = 0
        for _, file in pending:
            data = self._read(file)
            if data is None:
                continue
            keep = np.isin(data["image_ids"], live_items)
            added += self.images.add(data["image_ids"][keep], data["image_emb"][keep])
            keep = np.isin(data["text_ids"], live_texts)
            self.texts.add(data["text_ids"][keep], data["text_emb"][keep])
        self._save()
        self.meta.mark_merged([k for k, _ in pending])
        return added

    def _read(self, file: str) -> dict[str, np.ndarray] | None:
        path = self.shard_dir / file
        try:
            return read_shard_file(path)
        except (OSError, ValueError, KeyError) as e:
            log.warning("index %s: shard file %s unreadable (%s); its items will be re-encoded", self.name, path, e)
            return None

    def _build_collection(self, col: VectorCollection, kind: str, factory: str | None,
                          pending: list[tuple[str, str]], live: np.ndarray) -> None:
        """Choose the factory by size (or use ``factory``) and train it on a sample of the shards."""
        n = len(live)
        if n == 0:
            return
        factory = factory or fx.choose_factory(n, col.coarse_dims)
        parts: list[np.ndarray] = []
        if not fx.new_index(factory, col.coarse_dims).is_trained:  # IVF / PQ: train on a sample of shards
            want, have = fx.training_size(factory, n), 0
            rng = np.random.default_rng(0)
            for i in rng.permutation(len(pending)):
                data = self._read(pending[i][1])
                if data is not None:
                    ids, emb = data[f"{kind}_ids"], data[f"{kind}_emb"]
                    parts.append(emb[np.isin(ids, live)])
                    have += len(parts[-1])
                if have >= want:
                    break
        sample = np.concatenate(parts) if parts else np.zeros((0, col.dim), np.float32)
        col.build(factory, sample)

    def _save(self) -> None:
        self.images.save(self.folder)
        self.texts.save(self.folder)
        m = self.manifest
        m.factory, m.search_params, m.text_factory = self.images.factory, self.images.search_params, self.texts.factory
        m.count, m.text_count = self.images.ntotal, self.texts.ntotal
        m.save(self.folder)

    def remove(self, ids: Sequence[int]) -> int:
        """Delete items (and their captions) from the metadata store and the FAISS files."""
        gone, gone_texts = self.meta.delete(ids)
        self.images.remove(np.array(gone, np.int64))
        self.texts.remove(np.array(gone_texts, np.int64))
        self._save()
        return len(gone)

    def compact(self) -> dict[str, Any]:
        """Rebuild the search indexes from the exact stores without the deleted vectors an HNSW index
        keeps (it cannot delete in place), and save atomically. Returns dead counts before and after."""
        import time

        t0 = time.perf_counter()
        before = {"images": self.images.dead, "texts": self.texts.dead}
        for col in (self.images, self.texts):
            if col.built and col.dead:
                col.rebuild_search()
        self._save()
        return {"index": self.name, "factory": self.images.factory, "count": self.images.ntotal,
                "dead_before": before, "dead_after": {"images": self.images.dead, "texts": self.texts.dead},
                "seconds": round(time.perf_counter() - t0, 3)}

    def reconcile(self) -> dict[str, int]:
        """Bring FAISS in line with the metadata store after a crash: drop vectors whose items are gone,
        re-merge shards whose vectors are missing, and forget items whose vectors are lost (their shards
        are un-checkpointed so the next build re-encodes them)."""
        remove_stale_temps(self.folder)
        if self.shard_dir.is_dir():
            remove_stale_temps(self.shard_dir)
        fixed = {"stale_vectors": 0, "remerged": 0, "orphans": 0}
        if not self.images.built:
            return fixed
        live = self.meta.all_ids("items")
        stale = np.setdiff1d(self.images.ids(), live)
        fixed["stale_vectors"] = self.images.remove(stale)
        self.texts.remove(np.setdiff1d(self.texts.ids(), self.meta.all_ids("texts")))
        if len(np.setdiff1d(live, self.images.ids())):
            self.meta.mark_all_unmerged()
            fixed["remerged"] = self.merge()
            orphans = np.setdiff1d(self.meta.all_ids("items"), self.images.ids())
            if len(orphans):
                keys = {r[0] for r in self.meta.db.execute(
                    f"SELECT DISTINCT shard FROM items WHERE id IN ({','.join('?' * len(orphans))})",
                    [int(i) for i in orphans])}
                self.meta.delete(orphans.tolist())
                with self.meta.transaction() as con:
                    con.executemany("DELETE FROM shards WHERE key = ?", [(k,) for k in keys])
                fixed["orphans"] = len(orphans)
        if fixed["stale_vectors"] or fixed["orphans"]:
            self._save()
        return fixed
