"""The manifest: what an index holds and which model made it.

An index is only meaningful for the model that embedded it: cosine similarity between a CLIP
embedding and a SigLIP one (or between two fine-tunes of one architecture) is noise. So every index
records the model's spec string and its fingerprint (a hash of the spec and the weights), and every
query is checked against them before FAISS sees it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, Field, ValidationError

import vlserve
from vlserve.errors import IndexModelMismatch, InvalidInput, NotFound
from vlserve.retrieval.fsutil import atomic_write_text

if TYPE_CHECKING:
    from vlserve.models.base import DualEncoder
    from vlserve.models.spec import ModelSpec

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class IndexManifest(BaseModel):
    """Everything needed to use an index correctly, stored as ``manifest.json`` beside it."""

    format_version: int = FORMAT_VERSION
    name: str
    model_spec: str = Field(description="the spec string the index was built with")
    model_canonical: str
    fingerprint: str = Field(description="DualEncoder.fingerprint: spec + weights hash")
    family: str
    dim: int = Field(description="full embedding dimension stored for reranking")
    normalized: bool = True
    metric: str = "inner_product"
    matryoshka_dims: list[int] | None = Field(None, description="nested prefixes the model was trained with")
    coarse_dims: int = Field(description="dimension of the search index (== dim: no funnel)")
    factory: str | None = Field(None, description="FAISS factory of the image search index (None: not built yet)")
    text_factory: str | None = None
    search_params: str = ""
    backend: str = Field("faiss", description="where the vectors live: faiss (files in the index folder) or milvus")
    uri: str | None = Field(None, description="milvus: the Milvus URI (a .db path runs Milvus Lite; http://host:port "
                                              "a server); relative paths are under the index folder")
    rerank_store: str = Field("ram", description="faiss: where the exact full-dimension vectors live: ram (a FAISS "
                                                 "flat file loaded into memory) | disk-fp16 (fp16 rows on disk, "
                                                 "read at random); milvus ignores it")
    count: int = 0
    text_count: int = 0
    sources: list[str] = Field(default_factory=list)
    created_at: str = Field(default_factory=now_iso)
    updated_at: str = Field(default_factory=now_iso)
    vlserve_version: str = vlserve.__version__

    @property
    def funnel(self) -> bool:
        return self.coarse_dims < self.dim

    # ---- persistence -----------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: Path) -> IndexManifest:
        path = folder / MANIFEST
        if not path.is_file():
            raise NotFound(f"index {folder.name!r} not found (no {path})")
        try:
            return cls.model_validate(json.loads(path.read_text()))
        except (ValueError, ValidationError) as e:
            raise InvalidInput(f"index {folder.name!r}: unreadable manifest {path}: {e}") from None

    def save(self, folder: Path) -> None:
        self.updated_at = now_iso()
        self.vlserve_version = vlserve.__version__
        atomic_write_text(folder / MANIFEST, self.model_dump_json(indent=2) + "\n")

    # ---- checks ----------------------------------------------------------------------------------
    def check_encoder(self, encoder: DualEncoder) -> None:
        """Refuse a model whose fingerprint differs from the one that built the index."""
        if encoder.fingerprint != self.fingerprint:
            raise IndexModelMismatch(
                f"index {self.name!r} was built with model {self.model_spec!r} (fingerprint {self.fingerprint}); "
                f"the query model {encoder.spec.raw!r} has fingerprint {encoder.fingerprint}. Embeddings of "
                "different models are not comparable: query with the index's model or rebuild the index")

    def check_embeddings(self, vectors: Any, fingerprint: str | None = None) -> np.ndarray:
        """Validate raw query embeddings: [N, dim] finite non-zero floats, same model if a fingerprint is
        given. Returns them L2-normalised as float32."""
        if fingerprint is not None and fingerprint != self.fingerprint:
            raise IndexModelMismatch(
                f"index {self.name!r} holds embeddings of model {self.model_spec!r} (fingerprint {self.fingerprint});"
                f" the query embedding came from fingerprint {fingerprint}")
        try:
            x = np.asarray(vectors, dtype=np.float32)
        except (TypeError, ValueError):
            raise InvalidInput("query embedding must be a list of numbers") from None
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2 or x.shape[0] == 0:
            raise InvalidInput(f"query embeddings must be [N, {self.dim}], got shape {x.shape}")
        if x.shape[1] != self.dim:
            raise IndexModelMismatch(
                f"query embedding has {x.shape[1]} dimensions; index {self.name!r} holds {self.dim}-dimensional "
                f"embeddings of model {self.model_spec!r}")
        if not np.isfinite(x).all():
            raise InvalidInput("query embedding contains NaN or infinity")
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        if (norms < 1e-12).any():
            raise InvalidInput("query embedding is all zeros")
        return (x / norms).astype(np.float32)


def declared_matryoshka_dims(spec: ModelSpec) -> list[int] | None:
    """The nested prefixes a model declares it was trained with (``vlserve.matryoshka_dims`` in an
    open_clip local-dir config, as the toy model writes), or None."""
    if not spec.local_dir:
        return None
    cfg = Path(spec.local_dir) / "open_clip_config.json"
    try:
        dims = json.loads(cfg.read_text()).get("vlserve", {}).get("matryoshka_dims")
    except (OSError, ValueError):
        return None
    if isinstance(dims, list) and dims and all(isinstance(d, int) and d > 0 for d in dims):
        return sorted(dims)
    return None


def choose_coarse_dims(option: str | int | None, dim: int, declared: list[int] | None) -> int:
    """Resolve ``--coarse-dims``: ``auto`` (default) uses the funnel when the model declares Matryoshka
    prefixes, searching on the smallest declared prefix >= dim/8 (Kusupati et al. shortlist at a low
    prefix and rerank at full size); ``none`` or ``dim`` disables it; an integer forces that prefix."""
    if option is None or option == "auto":
        if not declared:
            return dim
        usable = [d for d in declared if dim / 8 <= d < dim]
        return min(usable) if usable else dim
    if option == "none":
        return dim
    try:
        d = int(option)
    except (TypeError, ValueError):
        raise InvalidInput(f"--coarse-dims must be auto, none or an integer, got {option!r}") from None
    if not 1 <= d <= dim:
        raise InvalidInput(f"--coarse-dims must be in 1..{dim}, got {d}")
    return d
