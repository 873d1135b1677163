"""Shards: the unit of work and of the build checkpoint.

A run's items are cut into shards of ``shard_size`` consecutive items; a shard's key is a hash of its
items' signatures (path, size, mtime). When a shard is finished the writer commits it in one SQLite
transaction (its new items, its unreadable inputs, its checkpoint row) right after writing its
embeddings file atomically. A re-run skips every shard whose key is checkpointed, so ``kill -9`` at
any moment loses at most the shards in flight, and duplicates are impossible: ids are content hashes
and the database holds each once.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vlserve.ingest.encoder import Decoded, Encoded
from vlserve.ingest.reader import SourceItem
from vlserve.retrieval.metadata import NewItem, ShardRecord, text_id
from vlserve.retrieval.store import ImageTextIndex, write_shard_file

log = logging.getLogger("vlserve.ingest")


@dataclass
class ShardPlan:
    seq: int
    key: str
    items: list[SourceItem]


def plan_shards(items: Sequence[SourceItem], shard_size: int) -> list[ShardPlan]:
    plans = []
    for seq, start in enumerate(range(0, len(items), shard_size)):
        chunk = list(items[start:start + shard_size])
        h = hashlib.blake2b(digest_size=12)
        for it in chunk:
            h.update(it.signature.encode() + b"\n" + "\x1f".join(it.captions).encode() + b"\n")
        plans.append(ShardPlan(seq, h.hexdigest(), chunk))
    return plans


@dataclass
class RunStats:
    shards_total: int = 0
    shards_skipped: int = 0
    shards_done: int = 0
    items_pending: int = 0
    added: int = 0
    duplicates: int = 0
    unreadable: int = 0
    texts_added: int = 0
    unreadable_examples: list[str] = field(default_factory=list)


class ShardWriter:
    """Collects a shard's results (in any order) and commits it when all its items are in."""

    def __init__(self, index: ImageTextIndex, source: str, stats: RunStats) -> None:
        self.index = index
        self.source = source
        self.stats = stats
        self._seen: set[int] = set()  # ids committed or pending in this run

    def is_duplicate(self, ids: Sequence[int]) -> list[bool]:
        """True for ids already indexed or already taken by an earlier item of this run."""
        known = self.index.meta.known(i for i in ids if i not in self._seen)
        out = []
        for i in ids:
            dup = i in known or i in self._seen
            self._seen.add(i)
            out.append(dup)
        return out

    def commit(self, plan: ShardPlan, decoded: Sequence[Decoded], encoded: dict[int, Encoded]) -> None:
        """``decoded``: every item of the shard; ``encoded``: position in the shard -> embeddings of the
        new (readable, not duplicate) ones."""
        new_items, unreadable = [], []
        image_ids, image_emb, text_ids, text_emb = [], [], [], []
        for d in sorted(decoded, key=lambda d: d.pos):
            item = plan.items[d.pos]
            if not d.ok:
                unreadable.append((item.key, d.reason))
                log.warning("unreadable, skipped: %s: %s", item.key, d.reason)
                if len(self.stats.unreadable_examples) < 5:
                    self.stats.unreadable_examples.append(f"{item.key}: {d.reason}")
                continue
            enc = encoded.get(d.pos)
            if enc is None:  # duplicate content
                continue
            new_items.append(NewItem(d.id, d.digest, item.key, enc.captions, item.meta))
            image_ids.append(d.id)
            image_emb.append(enc.image)
            for cap, vec in zip(enc.captions, enc.text, strict=True):
                text_ids.append(text_id(d.id, cap))
                text_emb.append(vec)
        file = None
        if new_items:
            file = f"{plan.seq:06d}-{plan.key}.npz"
            dim = self.index.manifest.dim
            write_shard_file(self.index.shard_dir / file, np.array(image_ids, np.int64),
                             np.stack(image_emb) if image_emb else np.zeros((0, dim), np.float32),
                             np.array(text_ids, np.int64),
                             np.stack(text_emb) if text_emb else np.zeros((0, dim), np.float32))
        n_dup = len(decoded) - len(unreadable) - len(new_items)
        self.index.meta.commit_shard(
            ShardRecord(plan.key, self.source, plan.seq, len(plan.items), len(new_items), n_dup, len(unreadable), file),
            new_items, unreadable)
        self.stats.shards_done += 1
        self.stats.added += len(new_items)
        self.stats.duplicates += n_dup
        self.stats.unreadable += len(unreadable)
        self.stats.texts_added += len(text_ids)

