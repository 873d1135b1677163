"""Moved to :mod:`vlserve.models.text_cache` (the zero-shot heads and the detectors' text queries share it)."""

from vlserve.models.text_cache import TextEmbeddingCache

__all__ = ["TextEmbeddingCache"]
