"""``build``: reader -> encoder -> writer for one index, with the local or the Ray runner, then merge.

The same function serves ``vlserve index build`` (new or existing index) and ``vlserve index add``
(an existing index; the model comes from its manifest).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlserve.errors import InvalidInput
from vlserve.ingest.reader import SourceItem, read_source
from vlserve.ingest.shards import RunStats, ShardWriter, plan_shards
from vlserve.retrieval.fsutil import writer_lock
from vlserve.retrieval.manifest import MANIFEST, IndexManifest, choose_coarse_dims, declared_matryoshka_dims
from vlserve.retrieval.store import ImageTextIndex, index_folder

if TYPE_CHECKING:
    from vlserve.models.base import DualEncoder, Runtime

log = logging.getLogger("vlserve.ingest")
RUNNERS = ("local", "ray")


@dataclass
class BuildOptions:
    runner: str = "local"
    workers: int | None = None          # local: decoding processes (None: cores - 1); ray: encoder actors
    batch_size: int = 64
    shard_size: int = 1000
    factory: str | None = None          # None: by size (see vlserve.retrieval.factory)
    coarse_dims: str | int | None = "auto"
    captions: bool = True
    image_col: str | None = None
    caption_col: str | None = None
    progress: bool = True
    ray_address: str | None = None
    ray_num_cpus: int | None = None     # a local Ray instance's CPUs (tests: 2)
    backend: str = "faiss"              # a new index's vector store: faiss or milvus
    uri: str | None = None              # milvus: a .db path (Milvus Lite; default: milvus.db in the index) or URL
    rerank_store: str | None = None     # faiss: a new index's exact store, ram | disk-fp16 (None: ram, or as it is)

    def check(self) -> None:
        from vlserve.retrieval.store import BACKENDS

        if self.backend not in BACKENDS:
            raise InvalidInput(f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.uri is not None and self.backend != "milvus":
            raise InvalidInput("--uri is for --backend milvus")
        from vlserve.retrieval.collection import RERANK_STORES

        if self.rerank_store is not None and self.rerank_store not in RERANK_STORES:
            raise InvalidInput(f"--rerank-store must be one of {', '.join(RERANK_STORES)}, got {self.rerank_store!r}")
        if self.rerank_store not in (None, "ram") and self.backend != "faiss":
            raise InvalidInput("--rerank-store is for --backend faiss (Milvus keeps the full vectors itself)")
        if self.runner not in RUNNERS:
            raise InvalidInput(f"--runner must be one of {', '.join(RUNNERS)}, got {self.runner!r}")
        for name in ("batch_size", "shard_size"):
            value = getattr(self, name)
            if not 1 <= value <= 1_000_000:
                raise InvalidInput(f"--{name.replace('_', '-')} must be in 1..1000000, got {value}")
        if self.workers is not None and not 0 <= self.workers <= 256:
            raise InvalidInput(f"--workers must be in 0..256, got {self.workers}")


def _describe(sources: list[str]) -> str:
    """Sources as recorded in the manifest: local paths absolute, patterns and URLs as given."""
    return " ".join(str(Path(s).resolve()) if Path(s).exists() else s for s in sources)


def read_sources(sources: list[str], opts: BuildOptions, root: Path) -> list[SourceItem]:
    if not sources:
        raise InvalidInput("no SOURCE given")
    items: dict[str, SourceItem] = {}
    for s in sources:
        for it in read_source(s, opts.image_col, opts.caption_col, skip=root):
            items.setdefault(it.key, it)
    return list(items.values())


def build(root: Path, name: str, sources: list[str], opts: BuildOptions, model: str | None = None,
          runtime: Runtime | None = None, encoder: DualEncoder | None = None) -> dict[str, Any]:
    """Index ``sources`` into ``root/name`` (created if new). Resumable: re-running the same command
    after a crash finishes the job; re-running on an unchanged source adds nothing."""
    from vlserve.models import load_dual_encoder

    opts.check()
    folder = index_folder(root, name)
    items = read_sources(sources, opts, root)  # fail fast on a bad source, before loading a model
    existing = (folder / MANIFEST).is_file()
    manifest = IndexManifest.load(folder) if existing else None
    if encoder is None:
        spec = model or (manifest.model_spec if manifest else None)
        if spec is None:
            raise InvalidInput(f"index {name!r} does not exist yet: give --model SPEC to create it")
        encoder = load_dual_encoder(spec, runtime)
    t0 = time.perf_counter()
    with writer_lock(folder):
        if manifest is not None:
            manifest.check_encoder(encoder)
            wanted = opts.coarse_dims
            if wanted not in (None, "auto") and choose_coarse_dims(wanted, manifest.dim, None) != manifest.coarse_dims:
                raise InvalidInput(f"index {name!r} searches on {manifest.coarse_dims} dims; --coarse-dims cannot "
                                   "change an existing index (build a new one under another --name)")
            if (opts.backend, opts.uri or manifest.uri) != (manifest.backend, manifest.uri) and (
                    opts.backend != "faiss" or opts.uri):
                raise InvalidInput(f"index {name!r} lives on {manifest.backend}" + (f" at {manifest.uri}" if
                                   manifest.uri else "") + "; --backend/--uri cannot move an existing index")
            if opts.rerank_store is not None and opts.rerank_store != manifest.rerank_store:
                raise InvalidInput(f"index {name!r} keeps its exact vectors in a {manifest.rerank_store} store; "
                                   "--rerank-store cannot change an existing index (build a new one)")
            index = ImageTextIndex(folder, manifest)
        else:
            dim = encoder.embed_dim
            declared = declared_matryoshka_dims(encoder.spec)
            manifest = IndexManifest(name=name, model_spec=encoder.spec.raw, model_canonical=encoder.spec.canonical,
                                     fingerprint=encoder.fingerprint, family=encoder.family, dim=dim,
                                     matryoshka_dims=declared,
                                     coarse_dims=choose_coarse_dims(opts.coarse_dims, dim, declared),
                                     backend=opts.backend, uri=opts.uri, rerank_store=opts.rerank_store or "ram")
            index = ImageTextIndex.create(root, manifest)
        try:
            return _run(index, items, sources, opts, encoder, t0)
        finally:
            index.close()


def _run(index: ImageTextIndex, items: list[SourceItem], sources: list[str], opts: BuildOptions,
         encoder: DualEncoder, t0: float) -> dict[str, Any]:
    repaired = index.reconcile()
    plans = plan_shards(items, opts.shard_size)
    done = index.meta.done_shards()
    pending = [p for p in plans if p.key not in done]
    stats = RunStats(shards_total=len(plans), shards_skipped=len(plans) - len(pending),
                     items_pending=sum(len(p.items) for p in pending))
    source = _describe(sources)
    writer = ShardWriter(index, source, stats)
    index.shard_dir.mkdir(exist_ok=True)
    t_encode = time.perf_counter()
    if pending:
        desc = f"index {index.name}"
        if opts.runner == "ray":
            from vlserve.ingest.ray_runner import run_ray

            run_ray(pending, encoder, writer, actors=opts.workers, batch_size=opts.batch_size,
                    captions=opts.captions, progress=opts.progress, desc=desc, address=opts.ray_address,
                    num_cpus=opts.ray_num_cpus)
        else:
            from vlserve.ingest.local import default_workers, run_local

            run_local(pending, encoder, writer, workers=default_workers() if opts.workers is None else opts.workers,
                      batch_size=opts.batch_size, captions=opts.captions, progress=opts.progress, desc=desc)
    encode_s = time.perf_counter() - t_encode
    index.merge(opts.factory)
    m = index.manifest
    if source not in m.sources:
        m.sources.append(source)
        m.save(index.folder)
    report = {
        "index": m.name, "folder": str(index.folder), "model": m.model_spec, "fingerprint": m.fingerprint,
        "source_items": len(items), **asdict(stats),
        "count": m.count, "text_count": m.text_count, "unreadable_total": index.meta.unreadable_count(),
        "factory": m.factory, "coarse_dims": m.coarse_dims, "dim": m.dim, "runner": opts.runner,
        "encode_seconds": round(encode_s, 3), "seconds": round(time.perf_counter() - t0, 3),
        "items_per_s": round(stats.items_pending / encode_s, 2) if stats.items_pending and encode_s > 0 else None,
    }
    if any(repaired.values()):
        report["repaired"] = repaired
    return report
