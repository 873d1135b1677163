"""Matryoshka (nested) embeddings: the first ``d`` dimensions of an MRL-trained embedding are a
usable embedding on their own once re-normalised (Kusupati et al. 2022)."""

from __future__ import annotations

import numpy as np

from vlserve.errors import InvalidInput


def check_dimensions(dimensions: int | None, full: int) -> None:
    """Raise :class:`InvalidInput` unless ``dimensions`` is None or an integer in ``1..full``."""
    if dimensions is None:
        return
    if isinstance(dimensions, bool) or not isinstance(dimensions, int | np.integer) or not 1 <= dimensions <= full:
        raise InvalidInput(f"dimensions must be an integer in 1..{full}, got {dimensions!r}")


def truncate(embeddings: np.ndarray, dimensions: int | None) -> np.ndarray:
    """Keep the first ``dimensions`` columns and L2-normalise each row again (float32)."""
    emb = np.asarray(embeddings, dtype=np.float32)
    if dimensions is None or dimensions == emb.shape[-1]:
        return emb
    check_dimensions(dimensions, emb.shape[-1])
    cut = emb[..., :dimensions]
    norms = np.linalg.norm(cut, axis=-1, keepdims=True)
    return (cut / np.maximum(norms, 1e-12)).astype(np.float32)
