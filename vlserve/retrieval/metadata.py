"""The metadata store (SQLite): ids -> source, captions, content hash, user metadata; bulk-build
shards and their checkpoint; unreadable inputs.

Ids are derived from content (:func:`content_id`), so the same image gets the same id whichever
runner (local or Ray), worker or order embedded it, and a second copy of an image is recognised as
a duplicate before it is encoded.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlserve.errors import InvalidInput

DB = "meta.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,              -- content_id(bytes): 63 bits of the content hash
    content_hash TEXT NOT NULL UNIQUE,   -- blake2b-128 of the encoded image bytes
    source TEXT NOT NULL,                -- path, URL or tar::member it was read from
    caption TEXT,                        -- first caption, if any
    meta TEXT NOT NULL DEFAULT '{}',     -- user metadata (JSON object)
    shard TEXT,
    added_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS items_source ON items(source);
CREATE TABLE IF NOT EXISTS texts (
    id INTEGER PRIMARY KEY,              -- text_id(item id, text)
    item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS texts_item ON texts(item_id);
CREATE TABLE IF NOT EXISTS shards (
    key TEXT PRIMARY KEY,                -- hash of the shard's source signatures
    source TEXT NOT NULL,
    seq INTEGER NOT NULL,
    n_items INTEGER NOT NULL,
    n_added INTEGER NOT NULL,
    n_duplicates INTEGER NOT NULL,
    n_unreadable INTEGER NOT NULL,
    file TEXT,                           -- embeddings file under shards/, NULL if nothing new
    merged INTEGER NOT NULL DEFAULT 0,   -- 1 once its vectors are saved in the FAISS files
    done_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS unreadable (
    source TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    shard TEXT
);
"""
FILTER_OPS = ("!=", ">=", "<=", "=", ">", "<")
COLUMNS = ("source", "caption", "id", "content_hash")


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def content_id(digest: str) -> int:
    """A positive int64 FAISS id from a content hash (63 bits; collisions ~N^2/2^64)."""
    return int(digest[:16], 16) >> 1


def text_id(item_id: int, text: str) -> int:
    return int(hashlib.blake2b(f"{item_id}\x00{text}".encode(), digest_size=8).hexdigest(), 16) >> 1


@dataclass
class NewItem:
    id: int
    content_hash: str
    source: str
    captions: list[str]
    meta: dict[str, Any]


@dataclass
class ShardRecord:
    key: str
    source: str
    seq: int
    n_items: int
    n_added: int
    n_duplicates: int
    n_unreadable: int
    file: str | None


def parse_filters(exprs: Sequence[str] | None) -> list[tuple[str, str, Any]]:
    """``["colour=red", "size>=3", "source=images/a.jpg"]`` -> [(field, op, value)]. Values are JSON
    when they parse as JSON (numbers, true/false), else strings."""
    out = []
    for expr in exprs or []:
        for op in FILTER_OPS:
            field, sep, raw = expr.partition(op)
            if sep and field.strip():
                break
        else:
            raise InvalidInput(f"filter {expr!r}: expected FIELD=VALUE (or !=, <, <=, >, >=)")
        field = field.strip()
        if not field.replace("_", "").replace(".", "").replace("-", "").isalnum():
            raise InvalidInput(f"filter {expr!r}: field names are letters, digits, '_', '-' and '.'")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw.strip()
        if isinstance(value, dict | list):
            value = json.dumps(value)
        out.append((field, op, value))
    return out


class MetadataStore:
    def __init__(self, folder: Path) -> None:
        self.path = folder / DB
        folder.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ---- items -------------------------------------------------------------------------------------
    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def text_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM texts").fetchone()[0])

    def known(self, ids: Iterable[int]) -> set[int]:
        """Which of ``ids`` are already indexed."""
        ids = list(ids)
        found: set[int] = set()
        for start in range(0, len(ids), 900):
            chunk = ids[start:start + 900]
            q = f"SELECT id FROM items WHERE id IN ({','.join('?' * len(chunk))})"
            found.update(r[0] for r in self.db.execute(q, chunk))
        return found

    def all_ids(self, table: str = "items") -> np.ndarray:
        assert table in ("items", "texts")
        rows = self.db.execute(f"SELECT id FROM {table} ORDER BY id").fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def insert(self, con: sqlite3.Connection, items: Sequence[NewItem], shard: str | None) -> list[int]:
        """Insert items and their captions inside a transaction; returns the text ids written."""
        now = time.time()
        con.executemany(
            "INSERT OR IGNORE INTO items(id, content_hash, source, caption, meta, shard, added_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(it.id, it.content_hash, it.source, it.captions[0] if it.captions else None,
              json.dumps(it.meta, sort_keys=True), shard, now) for it in items])
        rows = [(text_id(it.id, t), it.id, t) for it in items for t in dict.fromkeys(it.captions)]
        con.executemany("INSERT OR IGNORE INTO texts(id, item_id, text) VALUES (?, ?, ?)", rows)
        return [r[0] for r in rows]

    def _rows_for_ids(self, query: str, ids: Sequence[int]) -> Iterator[tuple[Any, ...]]:
        """Rows of ``query`` (whose ``{ids}`` is the id list) in chunks SQLite accepts as parameters."""
        for start in range(0, len(ids), 900):
            chunk = [int(i) for i in ids[start:start + 900]]
            yield from self.db.execute(query.format(ids=",".join("?" * len(chunk))), chunk)

    def get(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        rows = self._rows_for_ids("SELECT id, source, caption, meta, content_hash FROM items WHERE id IN ({ids})", ids)
        return {id_: {"id": id_, "source": source, "caption": caption, "meta": json.loads(meta),
                      "content_hash": digest} for id_, source, caption, meta, digest in rows}

    def get_texts(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        rows = self._rows_for_ids("SELECT t.id, t.text, t.item_id, i.source FROM texts t JOIN items i "
                                  "ON i.id = t.item_id WHERE t.id IN ({ids})", ids)
        return {id_: {"id": id_, "text": text, "item_id": item_id, "source": source}
                for id_, text, item_id, source in rows}

    def select(self, filters: Sequence[tuple[str, str, Any]], texts: bool = False) -> np.ndarray:
        """Ids of items (or, with ``texts``, of the captions of items) matching every filter: columns
        source/caption/id/content_hash, else keys of the metadata object."""
        where, args = [], []
        for field, op, value in filters:
            if field in COLUMNS:
                where.append(f"i.{field} {op} ?")
            else:
                where.append(f"json_extract(i.meta, ?) {op} ?")
                args.append(f'$."{field}"')
            args.append(value)
        q = "SELECT t.id FROM texts t JOIN items i ON i.id = t.item_id" if texts else "SELECT i.id FROM items i"
        q += (" WHERE " + " AND ".join(where)) if where else ""
        return np.array([r[0] for r in self.db.execute(q, args)], dtype=np.int64)

    def delete(self, ids: Sequence[int]) -> tuple[list[int], list[int]]:
        """Delete items (and their captions); returns (item ids, text ids) actually deleted."""
        ids = [int(i) for i in ids]
        gone, gone_texts = [], []
        with self.transaction() as con:
            for start in range(0, len(ids), 900):
                chunk = ids[start:start + 900]
                marks = ",".join("?" * len(chunk))
                gone += [r[0] for r in con.execute(f"SELECT id FROM items WHERE id IN ({marks})", chunk)]
                gone_texts += [r[0] for r in con.execute(f"SELECT id FROM texts WHERE item_id IN ({marks})", chunk)]
                con.execute(f"DELETE FROM items WHERE id IN ({marks})", chunk)
        return gone, gone_texts

    def ids_for_sources(self, sources: Sequence[str]) -> list[int]:
        out = []
        for s in sources:
            out += [r[0] for r in self.db.execute("SELECT id FROM items WHERE source = ?", (s,))]
        return out

    # ---- shards (the build checkpoint) ------------------------------------------------------------
    def done_shards(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT key FROM shards")}

    def commit_shard(self, rec: ShardRecord, items: Sequence[NewItem], unreadable: Sequence[tuple[str, str]]) -> None:
        """One transaction: the shard's new items, its unreadable inputs and its checkpoint row."""
        with self.transaction() as con:
            self.insert(con, items, rec.key)
            con.executemany("DELETE FROM unreadable WHERE source = ?", [(it.source,) for it in items])
            con.executemany("INSERT OR REPLACE INTO unreadable(source, reason, shard) VALUES (?, ?, ?)",
                            [(s, r, rec.key) for s, r in unreadable])
            con.execute("INSERT OR REPLACE INTO shards(key, source, seq, n_items, n_added, n_duplicates, "
                        "n_unreadable, file, merged, done_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
                        (rec.key, rec.source, rec.seq, rec.n_items, rec.n_added, rec.n_duplicates,
                         rec.n_unreadable, rec.file, time.time()))

    def unmerged_files(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.db.execute(
            "SELECT key, file FROM shards WHERE merged = 0 AND file IS NOT NULL ORDER BY done_at, seq")]

    def mark_merged(self, keys: Sequence[str]) -> None:
        with self.transaction() as con:
            con.executemany("UPDATE shards SET merged = 1 WHERE key = ?", [(k,) for k in keys])

    def mark_all_unmerged(self) -> None:
        self.db.execute("UPDATE shards SET merged = 0")

    def unreadable_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM unreadable").fetchone()[0])


def item_fields(store: MetadataStore, ids: Sequence[int], texts: bool = False) -> list[dict[str, Any]]:
    """Per id (an item's, or with ``texts`` a caption's), the item fields filters read: ``source``,
    ``caption`` (the item's first caption, "" when none) and ``meta``: what a vector database stores
    beside each vector so ``--where`` filters run inside it. Unknown ids get empty fields."""
    if texts:
        rows = store._rows_for_ids("SELECT t.id, i.source, i.caption, i.meta FROM texts t JOIN items i "
                                   "ON i.id = t.item_id WHERE t.id IN ({ids})", ids)
    else:
        rows = store._rows_for_ids("SELECT id, source, caption, meta FROM items WHERE id IN ({ids})", ids)
    found = {id_: {"source": source, "caption": caption or "", "meta": json.loads(meta)}
             for id_, source, caption, meta in rows}
    return [found.get(int(i), {"source": "", "caption": "", "meta": {}}) for i in ids]
