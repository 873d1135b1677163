"""The FAISS indexes under the index dir, loaded in the gateway process (FAISS needs no torch).

All index work runs on one worker thread: an index's SQLite metadata connection belongs to the thread
that opened it, FAISS searches release the GIL (so the event loop keeps serving), and searches of one
index never race. Query embeddings come from Triton; the manifest check (model fingerprint and
dimension, :class:`~vlserve.retrieval.manifest.IndexManifest`) runs before FAISS sees a query.
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
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlserve-index")

    async def run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def load(self) -> None:
        """Open every index under the root; one that fails is reported in ``failed``, not fatal."""
        await self.run(self._load)
        self.loaded = True
        log.info("indexes loaded from %s: %s%s", self.root, sorted(self.indexes) or "none",
                 f"; failed: {self.failed}" if self.failed else "")

    def _load(self) -> None:
        names = sorted(p.name for p in self.root.iterdir() if (p / MANIFEST).is_file()) if self.root.is_dir() else []
        for name in names:
            try:
                self.indexes[name] = ImageTextIndex.open(self.root, name)
            except (VLServeError, OSError, RuntimeError) as e:  # a broken index must not take the others down
                self.failed[name] = str(e)

    def get(self, name: str) -> ImageTextIndex:
        index = self.indexes.get(name)
        if index is None:
            known = ", ".join(self.indexes) or "none loaded"
            raise NotFound(f"index {name!r} not found; indexes: {known}", field="index")
        return index

    async def close(self) -> None:
        def close_all() -> None:
            for index in self.indexes.values():
                index.close()

        await self.run(close_all)
        self._executor.shutdown(wait=False)
