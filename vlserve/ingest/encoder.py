"""The stages between reader and writer: decode + preprocess (worker processes), then encode
(the process or actor holding the model).

:class:`Preprocessor` is the model's own ``DualEncoder.preprocess`` without the weights, so it can be
pickled into worker processes or Ray tasks cheaply; decoding and resizing then overlap with batched
encoding in the main process or the encoder actors.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from vlserve.errors import InvalidInput
from vlserve.ingest.reader import SourceItem, read_bytes
from vlserve.retrieval.metadata import content_hash, content_id

if TYPE_CHECKING:
    from vlserve.models.base import DualEncoder

HEAVY_ATTRIBUTES = ("model",)


class Preprocessor:
    """Picklable decode + transform: a copy of the encoder's preprocessing state without its model."""

    def __init__(self, encoder: DualEncoder) -> None:
        light = copy.copy(encoder)
        light.__dict__ = {k: v for k, v in encoder.__dict__.items() if k not in HEAVY_ATTRIBUTES}
        self._encoder = light

    def __call__(self, data: bytes) -> torch.Tensor:
        """Encoded bytes -> [3, H, W] float tensor; :class:`InvalidInput` for an unreadable image."""
        return self._encoder.preprocess([data])[0]


@dataclass
class Decoded:
    """One item after the worker stage: its content hash and pixels, or why it is unreadable."""

    shard: int                     # ShardPlan.seq
    pos: int                       # position inside the shard
    digest: str = ""
    pixels: torch.Tensor | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return not self.reason

    @property
    def id(self) -> int:
        return content_id(self.digest)


def decode(item: SourceItem, shard: int, pos: int, pre: Preprocessor) -> Decoded:
    """Read, hash and preprocess one item; never raises for a bad input (the reason is returned)."""
    try:
        data = read_bytes(item)
    except InvalidInput as e:
        return Decoded(shard, pos, reason=e.message)
    digest = content_hash(data)
    try:
        return Decoded(shard, pos, digest, pre(data))
    except InvalidInput as e:
        return Decoded(shard, pos, digest, reason=e.message)


@dataclass
class Encoded:
    """Embeddings of one new item: its image vector and one vector per caption."""

    image: np.ndarray
    captions: list[str]
    text: np.ndarray


def encode_batch(encoder: DualEncoder, pixels: torch.Tensor, captions: Sequence[Sequence[str]]) -> list[Encoded]:
    """Embed a batch of preprocessed images and their captions (captions de-duplicated per item)."""
    image = encoder.encode_pixels(pixels)
    per_item = [list(dict.fromkeys(c)) for c in captions]
    flat = [t for c in per_item for t in c]
    text = encoder.encode_texts(flat) if flat else np.zeros((0, image.shape[1]), np.float32)
    out, start = [], 0
    for i, caps in enumerate(per_item):
        out.append(Encoded(image[i], caps, text[start:start + len(caps)]))
        start += len(caps)
    return out
