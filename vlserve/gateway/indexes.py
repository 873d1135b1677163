"""The FAISS indexes under the index dir, loaded in the gateway process (FAISS needs no torch).

All index work runs on one worker thread: an index's SQLite metadata connection belongs to the thread
that opened it, FAISS searches release the GIL (so the event loop keeps serving), and searches of one
index never race. Query embeddings come from Triton; the manifest check (model fingerprint and
dimension, :class:`~vlserve.retrieval.manifest.IndexManifest`) runs before FAISS sees a query.

Indexes built, grown or shrunk by ``vlserve index`` while the gateway runs are picked up by
:meth:`IndexService.refresh` (called before each listing and search): an index whose manifest changed
on disk (every save rewrites it atomically) is opened again, a new one is opened, a deleted one is
dropped. A replaced index object is only retired, not closed, since a search queued before the
refresh may still hold it; retired ones close with the service.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from vlserve.errors import NotFound, VLServeError
from vlserve.retrieval.manifest import MANIFEST
from vlserve.retrieval.store import ImageTextIndex

log = logging.getLogger("vlserve.gateway")
T = TypeVar("T")


class IndexService:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.indexes: dict[str, ImageTextIndex] = {}
        self.failed: dict[str, str] = {}
        self.loaded = False
        self._seen: dict[str, tuple[int, int]] = {}  # name -> (manifest mtime_ns, size) when opened
        self._retired: list[ImageTextIndex] = []
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlserve-index")

    async def run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def load(self) -> None:
        """Open every index under the root; one that fails is reported in ``failed``, not fatal."""
        await self.run(self._load)
        self.loaded = True
        log.info("indexes loaded from %s: %s%s", self.root, sorted(self.indexes) or "none",
                 f"; failed: {self.failed}" if self.failed else "")

    async def refresh(self) -> None:
        """Open what changed on disk since the last look (see the module docstring)."""
        if self.loaded:
            await self.run(self._load)

    def _signature(self, name: str) -> tuple[int, int] | None:
        try:
            st = (self.root / name / MANIFEST).stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def _load(self) -> None:
        names = sorted(p.name for p in self.root.iterdir() if (p / MANIFEST).is_file()) if self.root.is_dir() else []
        for gone in set(self.indexes) - set(names):
            self._retired.append(self.indexes.pop(gone))
            self._seen.pop(gone, None)
        for name in set(self.failed) - set(names):
            del self.failed[name]
        for name in names:
            signature = self._signature(name)
            if signature is not None and self._seen.get(name) == signature:
                continue
            try:
                index = ImageTextIndex.open(self.root, name)
            except (VLServeError, OSError, RuntimeError) as e:  # a broken index must not take the others down
                self.failed[name] = str(e)
                if name in self.indexes:
                    self._retired.append(self.indexes.pop(name))
            else:
                if name in self.indexes:
                    self._retired.append(self.indexes[name])
                self.indexes[name] = index
                self.failed.pop(name, None)
            if signature is not None:
                self._seen[name] = signature

    def get(self, name: str) -> ImageTextIndex:
        index = self.indexes.get(name)
        if index is None:
            known = ", ".join(self.indexes) or "none loaded"
            raise NotFound(f"index {name!r} not found; indexes: {known}", field="index")
        return index

    async def close(self) -> None:
        def close_all() -> None:
            for index in [*self.indexes.values(), *self._retired]:
                index.close()

        await self.run(close_all)
        self._executor.shutdown(wait=False)
