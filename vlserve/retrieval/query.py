"""Queries against an :class:`ImageTextIndex`: text->image, image->image, embedding->image and
image->text (when captions were indexed), with top-k, pagination, Matryoshka ``dimensions`` and
metadata filters.

On Milvus, filters run inside the database (the rows carry their item's source, caption and
metadata; see ``milvus_collection.search_where``). On FAISS they run in SQLite first: a selective
filter (at most ``EXACT_SUBSET_MAX`` matches) is answered exactly by scoring just those items; a
broad one by over-fetching from the index (doubling) and keeping the matches, which stays fast
because most candidates pass. Both give the same hits for exact indexes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from vlserve.errors import InvalidInput
from vlserve.matryoshka import check_dimensions
from vlserve.retrieval.funnel import EXACT_SUBSET_MAX
from vlserve.retrieval.metadata import parse_filters

if TYPE_CHECKING:
    from vlserve.models.base import DualEncoder
    from vlserve.retrieval.store import ImageTextIndex

MAX_K = 10_000
MAX_WINDOW = 100_000  # offset + k
Target = Literal["images", "texts"]


@dataclass
class Hit:
    rank: int
    id: int
    score: float
    source: str
    caption: str | None = None  # images: the first caption; texts: the caption matched
    item_id: int | None = None  # texts: the image the caption belongs to
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Page:
    hits: list[Hit]
    k: int
    offset: int
    next_offset: int | None  # None: no more results

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k, "offset": self.offset, "next_offset": self.next_offset,
                "hits": [h.to_dict() for h in self.hits]}


def check_window(k: int, offset: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise InvalidInput(f"k must be an integer in 1..{MAX_K}, got {k!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidInput(f"offset must be an integer >= 0, got {offset!r}")
    if offset + k > MAX_WINDOW:
        raise InvalidInput(f"offset + k must be at most {MAX_WINDOW}, got {offset + k}")


class Searcher:
    """Runs queries on one index. ``encoder`` (optional) must be the index's model; it is checked."""

    def __init__(self, index: ImageTextIndex, encoder: DualEncoder | None = None) -> None:
        self.index = index
        self.encoder = encoder
        if encoder is not None:
            index.manifest.check_encoder(encoder)

    # ---- query kinds -------------------------------------------------------------------------------
    def by_text(self, texts: Sequence[str], **kw: Any) -> list[Page]:
        return self.by_embedding(self._encoder().encode_texts(list(texts)), **kw)

    def by_image(self, images: Sequence[Any], **kw: Any) -> list[Page]:
        return self.by_embedding(self._encoder().encode_images(list(images)), **kw)

    def by_id(self, ids: Sequence[int], **kw: Any) -> list[Page]:
        """More like these indexed images (their stored embeddings as queries)."""
        ids_arr = np.asarray(ids, np.int64)
        missing = ids_arr[~self.index.images.has(ids_arr)]
        if len(missing):
            raise InvalidInput(f"index {self.index.name!r} has no item with id {int(missing[0])}")
        return self.by_embedding(self.index.images.vectors(ids_arr), **kw)

    def by_embedding(self, vectors: Any, k: int = 10, offset: int = 0, dimensions: int | None = None,
                     where: Sequence[str] | None = None, target: Target = "images", shortlist: int | None = None,
                     fingerprint: str | None = None) -> list[Page]:
        """The core: validated query vectors -> one page of hits per query."""
        m = self.index.manifest
        check_window(k, offset)
        check_dimensions(dimensions, m.dim)
        if shortlist is not None and (isinstance(shortlist, bool) or not 1 <= shortlist <= 100_000):
            raise InvalidInput(f"shortlist must be in 1..100000, got {shortlist!r}")
        if target not in ("images", "texts"):
            raise InvalidInput(f"target must be 'images' or 'texts', got {target!r}")
        q = m.check_embeddings(vectors, fingerprint)
        col = self.index.images if target == "images" else self.index.texts
        if target == "texts" and col.ntotal == 0:
            raise InvalidInput(f"index {m.name!r} has no captions indexed, so it cannot search texts")
        filters = parse_filters(where)
        want = offset + k
        inside = getattr(col, "search_where", None)  # a vector database filters itself (Milvus)
        pushed = inside(q, filters, want, dimensions, shortlist, texts=target == "texts") \
            if filters and inside else None
        if pushed is not None:
            scores, ids = pushed
        elif filters:
            allowed = self.index.meta.select(filters, texts=target == "texts")
            if len(allowed) <= EXACT_SUBSET_MAX:
                scores, ids = col.search_subset(q, allowed, want, dimensions)
            else:
                scores, ids = self._overfetch(col, q, want, dimensions, shortlist, np.sort(allowed))
        else:
            scores, ids = col.search(q, want, dimensions, shortlist)
        total = col.ntotal
        return [self._page(s, i, k, offset, target, total) for s, i in zip(scores, ids, strict=True)]

    # ---- helpers -----------------------------------------------------------------------------------
    def _encoder(self) -> DualEncoder:
        if self.encoder is None:
            raise InvalidInput("this query needs the index's model; load it (Searcher(index, encoder))")
        return self.encoder

    @staticmethod
    def _overfetch(col: Any, q: np.ndarray, want: int, dimensions: int | None, shortlist: int | None,
                   allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores = np.full((len(q), want), -np.inf, np.float32)
        ids = np.full((len(q), want), -1, np.int64)
        for row in range(len(q)):
            fetch = 2 * want
            while True:
                s, i = col.search(q[row:row + 1], min(fetch, col.ntotal), dimensions, shortlist)
                s, i = s[0], i[0]
                ok = (i >= 0) & np.isin(i, allowed)
                if ok.sum() >= want or fetch >= col.ntotal:
                    n = min(want, int(ok.sum()))
                    scores[row, :n], ids[row, :n] = s[ok][:n], i[ok][:n]
                    break
                fetch *= 2
        return scores, ids

    def _page(self, scores: np.ndarray, ids: np.ndarray, k: int, offset: int, target: Target, total: int) -> Page:
        valid = ids >= 0
        scores, ids = scores[valid], ids[valid]
        rows = self.index.meta.get(ids.tolist()) if target == "images" else self.index.meta.get_texts(ids.tolist())
        hits = []
        for s, i in zip(scores, ids, strict=True):
            r = rows.get(int(i))
            if r is None:  # vector without metadata (a crash between the two writes): not an answer
                continue
            if target == "images":
                hits.append(Hit(0, int(i), float(s), r["source"], r["caption"], None, r["meta"]))
            else:
                hits.append(Hit(0, int(i), float(s), r["source"], r["text"], r["item_id"]))
        page = hits[offset:offset + k]
        for rank, h in enumerate(page, start=offset + 1):
            h.rank = rank
        more = len(hits) >= offset + k and offset + k < total
        return Page(page, k, offset, offset + k if more else None)
