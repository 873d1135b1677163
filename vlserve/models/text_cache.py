"""Text-embedding cache keyed by (model fingerprint, exact prompt): a bounded in-memory LRU in
front of an optional SQLite file, so prompt embeddings survive restarts and are shared by
processes on one machine.

Any model with a ``fingerprint`` and an ``encode_texts`` uses it: the zero-shot heads cache their
prompts' embeddings, the detectors their text queries' (one table; the fingerprints keep them apart).
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np


class TextTower(Protocol):
    """What the cache needs of a model: a fingerprint naming its weights, and its text embeddings."""

    @property
    def fingerprint(self) -> str: ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


class TextEmbeddingCache:
    def __init__(self, path: Path | str | None = None, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self._mem: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        self._db: sqlite3.Connection | None = None
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS text_embeddings (fingerprint TEXT, prompt TEXT, "
                             "vector BLOB, PRIMARY KEY (fingerprint, prompt))")
            self._db.commit()

    def __len__(self) -> int:
        return len(self._mem)

    def encode(self, model: TextTower, prompts: Sequence[str]) -> np.ndarray:
        """Embeddings for ``prompts`` (float32 [N, D]); only prompts never seen are encoded."""
        fp = model.fingerprint
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for p in dict.fromkeys(prompts):
                v = self._mem.get((fp, p))
                if v is not None:
                    self._mem.move_to_end((fp, p))
                    found[p] = v
        missing = [p for p in dict.fromkeys(prompts) if p not in found]
        if missing and self._db is not None:
            found.update(self._read_disk(fp, missing))
            missing = [p for p in missing if p not in found]
        self.hits += len(prompts) - len(missing)
        self.misses += len(missing)
        if missing:
            fresh = model.encode_texts(missing)
            new = dict(zip(missing, fresh, strict=True))
            found.update(new)
            self._write_disk(fp, new)
        with self._lock:
            for p, v in found.items():
                self._mem[(fp, p)] = v
                self._mem.move_to_end((fp, p))
            while len(self._mem) > self.max_entries:
                self._mem.popitem(last=False)
        return np.stack([found[p] for p in prompts]).astype(np.float32)

    def _read_disk(self, fp: str, prompts: list[str]) -> dict[str, np.ndarray]:
        assert self._db is not None
        out: dict[str, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(prompts), 500):
                chunk = prompts[start:start + 500]
                rows = self._db.execute(
                    f"SELECT prompt, vector FROM text_embeddings WHERE fingerprint = ? AND prompt IN "
                    f"({','.join('?' * len(chunk))})", [fp, *chunk]).fetchall()
                out.update({p: np.frombuffer(v, dtype=np.float32) for p, v in rows})
        return out

    def _write_disk(self, fp: str, items: dict[str, np.ndarray]) -> None:
        if self._db is None or not items:
            return
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO text_embeddings VALUES (?, ?, ?)",
                                 [(fp, p, np.asarray(v, np.float32).tobytes()) for p, v in items.items()])
            self._db.commit()
