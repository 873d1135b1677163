"""vlserve: vision-language retrieval and zero-shot classification server."""

__version__ = "0.1.0"
