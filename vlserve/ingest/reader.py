"""Readers: turn a SOURCE into a list of :class:`SourceItem` (where to read each image, its
captions and metadata) without reading any image yet.

SOURCE forms:

* a folder, walked recursively in sorted order; ``x.jpg`` may have sidecars ``x.txt`` (caption,
  one per line) and ``x.json`` (metadata object), as clip-retrieval and img2dataset write them;
* a CSV/TSV or parquet table with an image column (paths relative to the table's folder, or
  http(s) URLs), an optional caption column, other columns kept as metadata; rows naming the same
  image are one item with several captions;
* webdataset tars: a ``.tar`` file, a folder of them, a glob (``shards/*.tar``) or a brace range
  (``shards-{000..009}.tar``); members sharing a key form a sample (image + ``.txt`` + ``.json``);
* a single image file.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import re
import tarfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlserve.errors import InvalidInput, MissingExtra, NotFound, Unsupported

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
IMAGE_COLUMNS = ("image", "image_path", "path", "filepath", "file", "filename", "url", "image_url")
CAPTION_COLUMNS = ("caption", "text", "title", "alt")
TABLE_EXTS = (".csv", ".tsv", ".parquet")
URL_TIMEOUT_S = 20


@dataclass(frozen=True)
class SourceItem:
    key: str                       # where it came from: a path, a URL or TAR::MEMBER (stored as ``source``)
    signature: str                 # changes when the input changes (size, mtime): shard checkpoint keys
    captions: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    path: str = ""                 # file to read (the tar for webdataset members) or URL
    offset: int = -1               # webdataset: byte range of the member inside the tar
    size: int = -1

    def to_row(self) -> dict[str, Any]:
        return {"key": self.key, "signature": self.signature, "captions": list(self.captions),
                "meta": json.dumps(self.meta), "path": self.path, "offset": self.offset, "size": self.size}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> SourceItem:
        return cls(str(row["key"]), str(row["signature"]), tuple(row["captions"]), json.loads(row["meta"]),
                   str(row["path"]), int(row["offset"]), int(row["size"]))


def read_bytes(item: SourceItem) -> bytes:
    """The encoded image bytes of one item; :class:`InvalidInput` if it cannot be read."""
    try:
        if item.path.startswith(("http://", "https://")):
            with urllib.request.urlopen(item.path, timeout=URL_TIMEOUT_S) as r:
                return bytes(r.read())
        with open(item.path, "rb") as f:
            if item.offset >= 0:
                f.seek(item.offset)
                return f.read(item.size)
            return f.read()
    except OSError as e:
        raise InvalidInput(f"cannot read: {e.strerror or e}") from None


def read_source(source: str | Path, image_col: str | None = None, caption_col: str | None = None,
                skip: Path | None = None) -> list[SourceItem]:
    """Enumerate SOURCE (see the module docstring). Raises a clear error for a missing path, a table
    without an image column, or a source that holds no images at all. ``skip``: a folder to leave out
    (the index root, when it sits inside SOURCE)."""
    text = str(source)
    tars = _expand_tars(text)
    if tars is not None:
        items = [it for t in tars for it in _read_tar(t)]
    else:
        path = Path(text).expanduser()
        if not path.exists():
            raise NotFound(f"source not found: {text}")
        if path.is_dir():
            items = _read_folder(path, skip)
        elif path.suffix.lower() in TABLE_EXTS:
            items = _read_table(path, image_col, caption_col)
        elif path.suffix.lower() == ".tar":
            items = _read_tar(path)
        elif path.suffix.lower() in (".tgz", ".gz") or path.name.endswith(".tar.gz"):
            raise Unsupported(f"{text}: compressed tars cannot be read by byte range; use uncompressed .tar shards")
        else:
            st = path.stat()
            items = [SourceItem(str(path.resolve()), f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}",
                                path=str(path.resolve()))]
    if not items:
        raise InvalidInput(f"no images found in {text} (looked for {', '.join(IMAGE_EXTS)}"
                           + (", webdataset samples" if tars is not None else "") + ")")
    return items


def _expand_tars(text: str) -> list[Path] | None:
    """Tar shards named by a brace range, a glob, or a folder holding only .tar files; else None."""
    m = re.search(r"\{(\d+)\.\.(\d+)\}", text)
    if m:
        lo, hi, width = int(m.group(1)), int(m.group(2)), len(m.group(1))
        names = [text[:m.start()] + str(i).zfill(width) + text[m.end():] for i in range(lo, hi + 1)]
        missing = [n for n in names if not Path(n).is_file()]
        if missing:
            raise NotFound(f"source not found: {missing[0]} (from {text})")
        return [Path(n) for n in names]
    if any(ch in text for ch in "*?["):
        found = sorted(Path(p) for p in glob.glob(text))
        if not found:
            raise NotFound(f"source not found: nothing matches {text}")
        return found
    path = Path(text).expanduser()
    if path.is_dir():
        entries = [p for p in path.iterdir() if not p.name.startswith(".")]
        tars = sorted(p for p in entries if p.suffix == ".tar")
        if tars and len(tars) == len([p for p in entries if p.is_file()]):
            return tars
    return None


def _read_folder(root: Path, skip: Path | None) -> list[SourceItem]:
    skip_resolved = skip.resolve() if skip else None
    items = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and (skip_resolved is None or (Path(dirpath) / d).resolve() != skip_resolved))
        names = set(filenames)
        for name in sorted(filenames):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in IMAGE_EXTS or name.startswith("."):
                continue
            full = os.path.abspath(os.path.join(dirpath, name))
            st = os.stat(full)
            captions: tuple[str, ...] = ()
            meta: dict[str, Any] = {}
            if f"{stem}.txt" in names:
                lines = Path(dirpath, f"{stem}.txt").read_text(errors="replace").splitlines()
                captions = tuple(x.strip() for x in lines if x.strip())
            if f"{stem}.json" in names:
                meta = _json_object(Path(dirpath, f"{stem}.json").read_bytes())
            items.append(SourceItem(full, f"{full}:{st.st_size}:{st.st_mtime_ns}", captions, meta, path=full))
    return items


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {"value": obj}


def _table_rows(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise MissingExtra("pyarrow", "parquet") from None
        try:
            table = pq.read_table(path)
        except Exception as e:  # pyarrow raises many types for a bad file
            raise InvalidInput(f"{path}: not a readable parquet file ({e})") from None
        return list(table.column_names), table.to_pylist()
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _pick(columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, path: Path,
          required: bool) -> str | None:
    if wanted is not None:
        if wanted not in columns:
            raise InvalidInput(f"{path}: no column {wanted!r} for the {what}; "
                               f"columns: {', '.join(columns) or '(none)'}")
        return wanted
    lower = {c.lower(): c for c in columns}
    for c in candidates:
        if c in lower:
            return lower[c]
    if required:
        raise InvalidInput(f"{path}: no {what} column (looked for {', '.join(candidates)}); columns: "
                           f"{', '.join(columns) or '(none)'}; name it with --image-col")
    return None


def _read_table(path: Path, image_col: str | None, caption_col: str | None) -> list[SourceItem]:
    columns, rows = _table_rows(path)
    img = _pick(columns, image_col, IMAGE_COLUMNS, "image", path, required=True)
    assert img is not None
    cap = _pick(columns, caption_col, CAPTION_COLUMNS, "caption", path, required=False)
    base = path.parent.resolve()
    grouped: dict[str, tuple[list[str], dict[str, Any]]] = {}
    for row in rows:
        ref = str(row.get(img) or "").strip()
        if not ref:
            continue
        if not ref.startswith(("http://", "https://")):
            ref = str((base / ref.removeprefix("file://")).resolve())
        caps, meta = grouped.setdefault(ref, ([], {k: v for k, v in row.items() if k not in (img, cap)
                                                   and v not in (None, "")}))
        if cap is not None and row.get(cap) not in (None, ""):
            caps.append(str(row[cap]))
    items = []
    for ref, (caps, meta) in grouped.items():
        sig = ref
        if not ref.startswith(("http://", "https://")):
            try:
                st = os.stat(ref)
                sig = f"{ref}:{st.st_size}:{st.st_mtime_ns}"
            except OSError:
                sig = f"{ref}:missing"
        items.append(SourceItem(ref, sig, tuple(caps), _jsonable(meta), path=ref))
    return items


def _jsonable(meta: dict[str, Any]) -> dict[str, Any]:
    return {str(k): (v if isinstance(v, str | int | float | bool) or v is None else str(v)) for k, v in meta.items()}


def _read_tar(path: Path) -> list[SourceItem]:
    mtime = path.stat().st_mtime_ns
    samples: dict[str, dict[str, tarfile.TarInfo]] = {}
    try:
        tf = tarfile.open(path, "r:")  # noqa: SIM115 (closed by the with below)
    except (tarfile.TarError, OSError) as e:
        raise InvalidInput(f"{path}: not a readable uncompressed tar ({e})") from None
    with tf:
        for m in tf.getmembers():
            if not m.isfile():
                continue
            base = os.path.basename(m.name)
            if base.startswith("."):
                continue
            stem, _, ext = base.partition(".")
            key = os.path.join(os.path.dirname(m.name), stem)
            samples.setdefault(key, {})[ext.lower()] = m
        items = []
        for parts in samples.values():
            image = next((parts[e] for e in parts if f".{e}" in IMAGE_EXTS), None)
            if image is None:
                continue
            captions: tuple[str, ...] = ()
            meta: dict[str, Any] = {}
            for ext in ("txt", "caption", "text"):
                if ext in parts:
                    raw = tf.extractfile(parts[ext])
                    captions = tuple(x.strip() for x in (raw.read() if raw else b"").decode(errors="replace")
                                     .splitlines() if x.strip())
                    break
            if "json" in parts and (raw := tf.extractfile(parts["json"])) is not None:
                meta = _json_object(raw.read())
            name = f"{path.resolve()}::{image.name}"
            items.append(SourceItem(name, f"{name}:{image.size}:{mtime}", captions, meta, path=str(path.resolve()),
                                    offset=image.offset_data, size=image.size))
    return items
