"""``vlserve index``: build, grow, inspect, search and prune FAISS indexes bound to their model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from vlserve.cli.common import check_files, naming_files, print_json, runtime, settings
from vlserve.errors import InvalidInput, NotFound

index_app = typer.Typer(no_args_is_help=True,
                        help="FAISS indexes bound to their model: build, add, info, search, remove, compact.")

IndexDirOpt = Annotated[Path | None, typer.Option("--index-dir", help="default: $VLSERVE_INDEX_DIR or ./index")]
ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="model spec (default: the index's own)")]
WhereOpt = Annotated[list[str] | None, typer.Option("--where", "-w",
                                                   help="metadata filter FIELD=VALUE (also != < <= > >=), repeatable")]
RunnerOpt = Annotated[str, typer.Option(help="local (worker processes) | ray (Ray Data)")]
WorkersOpt = Annotated[int | None, typer.Option(help="local: decoding processes (default: cores-1); "
                                                     "ray: encoder actors")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="images per encoder batch")]
ShardOpt = Annotated[int, typer.Option("--shard-size", help="items per checkpointed shard")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="progress bar on stderr")]
CaptionsOpt = Annotated[bool, typer.Option("--captions/--no-captions", help="also index captions (image->text)")]
ImageColOpt = Annotated[str | None, typer.Option("--image-col", help="CSV/parquet image column (default: detected)")]
CaptionColOpt = Annotated[str | None, typer.Option("--caption-col", help="CSV/parquet caption column")]
RayAddressOpt = Annotated[str | None, typer.Option("--ray-address", help="Ray cluster address (default: local Ray)")]
RayCpusOpt = Annotated[int | None, typer.Option("--ray-num-cpus", help="CPUs of a local Ray instance")]


def _root(index_dir: Path | None) -> Path:
    return index_dir if index_dir is not None else settings().index_dir


def _build(name: str, sources: list[str], model: str | None, **kw: Any) -> None:
    from vlserve.ingest.pipeline import BuildOptions, build

    index_dir = kw.pop("index_dir")
    opts = BuildOptions(**kw)
    print_json(build(_root(index_dir), name, sources, opts, model=model, runtime=runtime(max_batch=opts.batch_size)))


@index_app.command("build")
def build_cmd(
    source: Annotated[str, typer.Argument(help="folder, CSV/TSV/parquet, .tar / tar glob / {000..009} range")],
    name: Annotated[str, typer.Option("--name", "-n", help="index name (a folder under the index dir)")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="model spec (required for a new index)")] = None,
    runner: RunnerOpt = "local",
    workers: WorkersOpt = None,
    batch_size: BatchOpt = 64,
    shard_size: ShardOpt = 1000,
    factory: Annotated[str | None, typer.Option(help="FAISS factory, e.g. 'HNSW32,Flat' (default: by size)")] = None,
    coarse_dims: Annotated[str, typer.Option("--coarse-dims",
                                             help="Matryoshka funnel prefix: auto | none | N")] = "auto",
    captions: CaptionsOpt = True,
    image_col: ImageColOpt = None,
    caption_col: CaptionColOpt = None,
    progress: ProgressOpt = True,
    ray_address: RayAddressOpt = None,
    ray_num_cpus: RayCpusOpt = None,
    backend: Annotated[str, typer.Option(help="a new index's vector store: faiss (files in the index folder) | "
                                              "milvus")] = "faiss",
    uri: Annotated[str | None, typer.Option(help="--backend milvus: a .db path runs Milvus Lite (default: milvus.db "
                                                 "in the index folder); http://host:19530 a Milvus server "
                                                 "(token: $VLSERVE_MILVUS_TOKEN)")] = None,
    rerank_store: Annotated[str | None, typer.Option(
        "--rerank-store", help="a new faiss index's exact vectors: ram (default) | disk-fp16 (fp16 rows on disk "
                               "file: for indexes bigger than RAM, see docs/retrieval.md)")] = None,
    index_dir: IndexDirOpt = None,
) -> None:
    """Embed every image of SOURCE into index NAME. Resumable (re-run the same command after a crash)
    and idempotent (an unchanged source adds nothing). Prints a JSON report."""
    _build(name, [source], model, runner=runner, workers=workers, batch_size=batch_size, shard_size=shard_size,
           factory=factory, coarse_dims=coarse_dims, captions=captions, image_col=image_col,
           caption_col=caption_col, progress=progress, ray_address=ray_address, ray_num_cpus=ray_num_cpus,
           backend=backend, uri=uri, rerank_store=rerank_store, index_dir=index_dir)


@index_app.command("add")
def add_cmd(
    name: Annotated[str, typer.Argument(help="an existing index")],
    sources: Annotated[list[str], typer.Argument(help="image files, folders, tables or tars")],
    runner: RunnerOpt = "local",
    workers: WorkersOpt = None,
    batch_size: BatchOpt = 64,
    shard_size: ShardOpt = 1000,
    captions: CaptionsOpt = True,
    image_col: ImageColOpt = None,
    caption_col: CaptionColOpt = None,
    ray_address: RayAddressOpt = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="progress bar on stderr (default: off, "
                                                                             "unlike build)")] = False,
    index_dir: IndexDirOpt = None,
) -> None:
    """Add images to an existing index (with its own model); duplicates are skipped."""
    root = _root(index_dir)
    from vlserve.retrieval.manifest import IndexManifest
    from vlserve.retrieval.store import index_folder

    IndexManifest.load(index_folder(root, name))  # NotFound before anything else
    _build(name, sources, None, runner=runner, workers=workers, batch_size=batch_size, shard_size=shard_size,
           captions=captions, image_col=image_col, caption_col=caption_col, progress=progress,
           ray_address=ray_address, index_dir=index_dir)


@index_app.command("info")
def info_cmd(name: Annotated[str, typer.Argument()], index_dir: IndexDirOpt = None) -> None:
    """The manifest plus live counts and file sizes."""
    from vlserve.retrieval.store import ImageTextIndex

    idx = ImageTextIndex.open(_root(index_dir), name)
    try:
        shards = idx.meta.db.execute("SELECT COUNT(*), COALESCE(SUM(merged), 0) FROM shards").fetchone()
        files = {p.name: p.stat().st_size for p in sorted(idx.folder.iterdir()) if p.is_file()
                 and not p.name.startswith(".")}
        print_json({**idx.manifest.model_dump(), "folder": str(idx.folder), "items": idx.meta.count(),
              "captions": idx.meta.text_count(), "unreadable": idx.meta.unreadable_count(),
              "shards": {"done": shards[0], "merged": shards[1]}, "files": files,
              "deleted_pending_compaction": idx.images.dead})
    finally:
        idx.close()


@index_app.command("list")
def list_cmd(index_dir: IndexDirOpt = None) -> None:
    """Indexes under the index dir, with their model and count."""
    from vlserve.retrieval.manifest import IndexManifest

    root = _root(index_dir)
    out = []
    for p in sorted(root.iterdir()) if root.is_dir() else []:
        if (p / "manifest.json").is_file():
            m = IndexManifest.load(p)
            out.append({"name": m.name, "model": m.model_spec, "count": m.count, "dim": m.dim,
                        "coarse_dims": m.coarse_dims, "factory": m.factory})
    print_json({"index_dir": str(root), "indexes": out})


def _parse_embedding(value: str) -> Any:
    raw = value
    if value.startswith("@"):
        path = Path(value[1:])
        if not path.is_file():
            raise NotFound(f"embedding file not found: {path}")
        raw = path.read_text()
    try:
        return json.loads(raw)
    except ValueError:
        raise InvalidInput("--embedding must be a JSON list of numbers (or @FILE holding one)") from None


@index_app.command("search")
def search_cmd(
    name: Annotated[str, typer.Argument()],
    text: Annotated[list[str] | None, typer.Option("--text", "-t", help="text query (repeatable)")] = None,
    image: Annotated[list[Path] | None, typer.Option("--image", "-i", help="image query (repeatable)")] = None,
    embedding: Annotated[str | None, typer.Option(help="JSON vector or @file (one vector or a list)")] = None,
    like_id: Annotated[list[int] | None, typer.Option("--like-id", help="an indexed item's id as the query")] = None,
    k: Annotated[int, typer.Option("--k", "-k", help="results per query (1..10000)")] = 10,
    offset: Annotated[int, typer.Option(help="skip this many results (pagination)")] = 0,
    dimensions: Annotated[int | None, typer.Option("--dimensions", "-d",
                                                   help="score on this Matryoshka prefix (default: full)")] = None,
    where: WhereOpt = None,
    target: Annotated[str, typer.Option(help="images | texts (captions: image->text)")] = "images",
    shortlist: Annotated[int | None, typer.Option(help="funnel shortlist size (default max(200, 4k))")] = None,
    fingerprint: Annotated[str | None, typer.Option(help="model fingerprint of --embedding (checked)")] = None,
    model: ModelOpt = None,
    index_dir: IndexDirOpt = None,
) -> None:
    """Search by text, image, embedding or indexed id; prints one page of hits per query as JSON."""
    from vlserve.retrieval.query import Searcher, check_window
    from vlserve.retrieval.store import ImageTextIndex

    kinds = [x for x in (text, image, embedding, like_id) if x]
    if len(kinds) != 1:
        raise InvalidInput("give exactly one kind of query: --text, --image, --embedding or --like-id")
    check_window(k, offset)
    check_files(image or [])
    idx = ImageTextIndex.open(_root(index_dir), name)
    try:
        encoder = None
        if text or image:
            from vlserve.models import load_dual_encoder

            encoder = load_dual_encoder(model or idx.manifest.model_spec, runtime())
        searcher = Searcher(idx, encoder)
        kw: dict[str, Any] = {"k": k, "offset": offset, "dimensions": dimensions, "where": where,
                              "target": target, "shortlist": shortlist}
        if text:
            queries: list[str] = list(text)
            pages = searcher.by_text(text, **kw)
        elif image:
            queries = [str(p) for p in image]
            pages = []
            for p in image:
                with naming_files([p]):
                    pages += searcher.by_image([p.read_bytes()], **kw)
        elif like_id:
            queries = [f"id:{i}" for i in like_id]
            pages = searcher.by_id(like_id, **kw)
        else:
            assert embedding is not None
            vectors = _parse_embedding(embedding)
            pages = searcher.by_embedding(vectors, fingerprint=fingerprint, **kw)
            queries = [f"embedding {i}" for i in range(len(pages))]
        print_json({"index": name, "model": idx.manifest.model_spec, "target": target, "count": idx.manifest.count,
              "results": [{"query": q, **page.to_dict()} for q, page in zip(queries, pages, strict=True)]})
    finally:
        idx.close()


@index_app.command("compact")
def compact_cmd(name: Annotated[str, typer.Argument()], index_dir: IndexDirOpt = None) -> None:
    """Drop deleted vectors from the search index: HNSW cannot delete in place, so removed items stay in
    it (filtered at query time) until this rebuilds it from the exact store; saved atomically. Prints
    dead vectors before and after, and the seconds it took."""

    with _locked_index(_root(index_dir), name) as idx:
        print_json(idx.compact())


@contextmanager
def _locked_index(root: Path, name: str) -> Iterator[Any]:
    """The index opened *under* its writer lock, so what it loads is what the writer saves over (an
    index opened first could be changed by another writer before the lock is taken)."""
    from vlserve.retrieval.fsutil import writer_lock
    from vlserve.retrieval.store import ImageTextIndex, index_folder

    folder = index_folder(root, name)
    if not folder.is_dir():
        ImageTextIndex.open(root, name)  # raises NotFound, naming the indexes that exist
    with writer_lock(folder):
        idx = ImageTextIndex.open(root, name)
        try:
            yield idx
        finally:
            idx.close()


@index_app.command("remove")
def remove_cmd(
    name: Annotated[str, typer.Argument()],
    ids: Annotated[list[int] | None, typer.Option("--id", help="item id (repeatable)")] = None,
    source: Annotated[list[str] | None, typer.Option("--source", help="item source path (repeatable)")] = None,
    where: WhereOpt = None,
    index_dir: IndexDirOpt = None,
) -> None:
    """Delete items (by id, source or metadata filter) from a live index; saved atomically."""
    from vlserve.retrieval.metadata import parse_filters

    if not (ids or source or where):
        raise InvalidInput("nothing to remove: give --id, --source or --where")
    with _locked_index(_root(index_dir), name) as idx:
        targets = set(ids or [])
        targets.update(idx.meta.ids_for_sources([str(Path(s).resolve()) if Path(s).exists() else s
                                                 for s in source or []]))
        if where:
            targets.update(idx.meta.select(parse_filters(where)).tolist())
        n = idx.remove(sorted(targets))
        print_json({"index": name, "removed": n, "count": idx.manifest.count, "text_count": idx.manifest.text_count})
