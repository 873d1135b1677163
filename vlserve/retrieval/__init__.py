"""Retrieval: FAISS indexes bound to their model (manifest), a SQLite metadata store, Matryoshka funnel
search and the query API. See docs/retrieval.md."""

from vlserve.retrieval.manifest import IndexManifest
from vlserve.retrieval.query import Hit, Page, Searcher
from vlserve.retrieval.store import ImageTextIndex

__all__ = ["Hit", "ImageTextIndex", "IndexManifest", "Page", "Searcher"]
