"""The HTTP gateway (FastAPI): OpenAI-compatible embeddings, zero-shot classification, ranking, index
search, detection and segmentation over the Triton models, through
:class:`~vlserve.serving.client.AsyncVLServeClient`. Transport code: it imports no torch (an
import-linter contract); FAISS indexes are searched in this process, everything else runs in Triton.
See docs/serving.md."""
