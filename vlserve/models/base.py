"""The dual-encoder interface every backend implements.

A backend supplies four things: ``_preprocess`` (PIL -> tensor, the checkpoint's own transform),
``_tokenize`` (texts -> model inputs, truncating as the reference library does), and the raw
``_image_features`` / ``_text_features`` forwards. Everything else (batching, normalisation,
device and precision, the family's scoring rule, fingerprints) lives here once.

Scoring rules (each family's own):

* CLIP:   ``logits = exp(logit_scale) * cos``; probabilities = softmax over the labels.
* SigLIP: ``logits = exp(logit_scale) * cos + logit_bias``; probabilities = independent sigmoids.
* ALIGN:  ``logits = cos / temperature``; probabilities = softmax over the labels.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from vlserve.errors import InvalidInput
from vlserve.models.images import ImageInput, decode_images
from vlserve.models.spec import ModelSpec
from vlserve.settings import Runtime

log = logging.getLogger("vlserve.models")
Family = Literal["clip", "siglip", "align"]
RULES = {
    "clip": "softmax(exp(logit_scale) * cos)",
    "siglip": "sigmoid(exp(logit_scale) * cos + logit_bias)",
    "align": "softmax(cos / temperature)",
}


def resolve_runtime(runtime: Runtime) -> tuple[torch.device, torch.dtype]:
    """The torch device and dtype a :class:`~vlserve.settings.Runtime` stands for."""
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu") if runtime.device == "auto" \
        else torch.device(runtime.device)
    if runtime.precision == "auto":
        return dev, torch.float16 if dev.type == "cuda" else torch.float32
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if runtime.precision not in dtypes:
        raise InvalidInput(f"unknown precision {runtime.precision!r}; known: auto, {', '.join(dtypes)}",
                           field="precision")
    return dev, dtypes[runtime.precision]


def weights_hash(module: torch.nn.Module) -> str:
    """A hash of every parameter and buffer (names, shapes, dtypes and bytes)."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class LoadedModel:
    """What every loaded model shares, whatever its capability: the spec it was named by, the
    runtime, the torch module on its device and dtype (eval mode, no gradients), and a fingerprint."""

    spec: ModelSpec

    def __init__(self, spec: ModelSpec, model: torch.nn.Module, runtime: Runtime) -> None:
        self.spec = spec
        self.runtime = runtime
        self._weights_hash = weights_hash(model)
        self.device, self.dtype = resolve_runtime(runtime)
        self.model = model.to(self.device, self.dtype).eval().requires_grad_(False)
        if runtime.max_batch < 1:
            raise InvalidInput(f"max_batch must be >= 1, got {runtime.max_batch}", field="max_batch")

    @property
    def fingerprint(self) -> str:
        """Stable across processes and machines: the spec plus a hash of the weights as loaded."""
        return hashlib.blake2b(f"{self.spec.canonical}|{self._weights_hash}".encode(), digest_size=8).hexdigest()


class DualEncoder(LoadedModel, ABC):
    """Image and text towers in one embedding space. Outputs are float32, L2-normalised."""

    family: Family

    # ---- backend hooks -------------------------------------------------------------------------
    @abstractmethod
    def _preprocess(self, image: Any) -> torch.Tensor:
        """One RGB PIL image -> a [3, H, W] float tensor (the checkpoint's own transform)."""

    @abstractmethod
    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Texts -> model inputs, truncated to the context length as the reference library does."""

    @abstractmethod
    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def _text_features(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor: ...

    @abstractmethod
    def scale_and_bias(self) -> tuple[float, float]:
        """(multiplier, bias) so that ``logits = multiplier * cos + bias`` for this family."""

    @functools.cached_property
    def embed_dim(self) -> int:
        """Output dimension, read off one text forward (the same for every family and backend)."""
        return int(self.encode_texts(["a"]).shape[1])

    @property
    @abstractmethod
    def context_length(self) -> int: ...

    @property
    @abstractmethod
    def image_size(self) -> tuple[int, int]: ...

    # ---- public API ----------------------------------------------------------------------------
    def preprocess(self, images: Sequence[ImageInput]) -> torch.Tensor:
        """Decode and transform images into a [N, 3, H, W] batch (CPU, float32)."""
        pil = decode_images(list(images), self.runtime.max_image_pixels)
        return torch.stack([self._preprocess(im) for im in pil])

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """Embed already-preprocessed pixels (e.g. from a worker pool), batched by ``max_batch``."""
        out = []
        for start in range(0, len(pixels), self.runtime.max_batch):
            chunk = pixels[start:start + self.runtime.max_batch].to(self.device, self.dtype)
            out.append(self._normalise(self._image_features(chunk)))
        return np.concatenate(out)

    def encode_images(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Images (bytes, PIL or uint8 HWC arrays) -> float32 [N, D], L2-normalised."""
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        elif isinstance(images, bytes | np.ndarray) or not isinstance(images, Sequence):
            images = [images]
        return self.encode_pixels(self.preprocess(images))

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """The text tower's input tensors for ``texts`` (CPU), exactly as :meth:`encode_texts` builds them."""
        texts = list(texts)
        if not texts:
            raise InvalidInput("no texts given (empty list)")
        return self._tokenize(texts)

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> float32 [N, D], L2-normalised. Over-long texts are truncated, never refused."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            raise InvalidInput("no texts given (empty list)")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InvalidInput(f"expected a string, got {type(t).__name__}", item=i, field="text")
        out = []
        for start in range(0, len(texts), self.runtime.max_batch):
            chunk = texts[start:start + self.runtime.max_batch]
            inputs = {k: v.to(self.device) for k, v in self._tokenize(chunk).items()}
            out.append(self._normalise(self._text_features(inputs)))
        return np.concatenate(out)

    def similarity_logits(self, image_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
        """[N_img, N_txt] logits by the family's rule, from normalised embeddings."""
        image_emb, text_emb = _as_2d(image_emb), _as_2d(text_emb)
        scale, bias = self.scale_and_bias()
        return (scale * (image_emb.astype(np.float64) @ text_emb.astype(np.float64).T) + bias).astype(np.float32)

    def probabilities(self, image_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
        """Softmax over labels (CLIP, ALIGN) or independent sigmoids (SigLIP), per image."""
        return scores_from_logits(self.similarity_logits(image_emb, text_emb), sigmoid=self.family == "siglip")

    @property
    def multi_label(self) -> bool:
        return self.family == "siglip"

    @property
    def scoring_rule(self) -> str:
        return RULES[self.family]

    def info(self) -> dict[str, Any]:
        scale, bias = self.scale_and_bias()
        return {
            "spec": self.spec.raw,
            "canonical_spec": self.spec.canonical,
            "backend": self.spec.backend,
            "family": self.family,
            "embed_dim": self.embed_dim,
            "context_length": self.context_length,
            "image_size": list(self.image_size),
            "scoring_rule": self.scoring_rule,
            "multi_label": self.multi_label,
            "logit_scale": scale,
            "logit_bias": bias,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "fingerprint": self.fingerprint,
            "parameters": sum(p.numel() for p in self.model.parameters()),
        }

    @staticmethod
    def _normalise(x: torch.Tensor) -> np.ndarray:
        x = x.float()
        return torch.nn.functional.normalize(x, dim=-1).cpu().numpy().astype(np.float32)


def scores_from_logits(logits: np.ndarray, sigmoid: bool) -> np.ndarray:
    """Independent sigmoids, or a softmax over the last axis (float64 inside, float32 out)."""
    x = np.asarray(logits, dtype=np.float64)
    if sigmoid:
        return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def _as_2d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise InvalidInput(f"embeddings must be [N, D], got shape {x.shape}")
    return x
