"""The open-vocabulary detector interface (OWL-ViT, OWLv2): an image tower whose patch tokens each
predict one box, and class/box heads that score those boxes against query embeddings.

A backend supplies the raw pieces (``_preprocess``, ``_image_features``, ``_tokenize``,
``_text_features``, ``_class_logits``, ``box_scale``); batching, devices, query embeddings and the
image-query rules live here once. Post-processing (thresholds, NMS, top-k) is the engine's
(:mod:`vlserve.detection`); this layer stops at logits and boxes in the model's own frame.

The image tower runs once per image: :meth:`Detector.encode_pixels` returns an
:class:`ImageFeatures` holding everything the heads need (patch tokens, boxes, class embeddings,
objectness), so any number of text or image queries is scored against it without re-running it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from vlserve.errors import InvalidInput
from vlserve.models.base import LoadedModel
from vlserve.models.images import ImageInput, decode_images

DetectorFamily = Literal["owlvit", "owlv2"]
Box = tuple[float, float, float, float]
QUERY_IOU_FRACTION = 0.8  # the original's adaptive threshold: boxes within 80% of the best IoU


@dataclass
class ImageFeatures:
    """One image-tower pass over ``N`` images with ``P`` patch tokens each (on the model's device).

    ``boxes`` are (cx, cy, w, h) in [0, 1] of the model's input frame (see
    :meth:`Detector.box_scale`); ``class_embeds`` are the class head's per-patch embeddings (not
    normalised), the source of image queries; ``objectness`` is OWLv2's per-patch objectness
    logit (None for OWL-ViT); ``sizes`` the (height, width) of each decoded input image.
    """

    tokens: torch.Tensor  # [N, P, H]
    boxes: torch.Tensor  # [N, P, 4]
    class_embeds: torch.Tensor  # [N, P, D]
    objectness: torch.Tensor | None  # [N, P]
    sizes: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.sizes)

    def rows(self, start: int, stop: int) -> ImageFeatures:
        """Images ``start:stop`` (views, no copy)."""
        obj = None if self.objectness is None else self.objectness[start:stop]
        return ImageFeatures(self.tokens[start:stop], self.boxes[start:stop], self.class_embeds[start:stop], obj,
                             self.sizes[start:stop])

    @staticmethod
    def concat(parts: Sequence[ImageFeatures]) -> ImageFeatures:
        obj = None if parts[0].objectness is None else torch.cat([p.objectness for p in parts])  # type: ignore[misc]
        return ImageFeatures(torch.cat([p.tokens for p in parts]), torch.cat([p.boxes for p in parts]),
                             torch.cat([p.class_embeds for p in parts]), obj,
                             [s for p in parts for s in p.sizes])


def center_to_corners(boxes: torch.Tensor) -> torch.Tensor:
    """(cx, cy, w, h) -> (x0, y0, x1, y1), as transformers' ``center_to_corners_format``."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


class Detector(LoadedModel, ABC):
    """Text- and image-queried box prediction. Query embeddings are float32 ``[Q, D]`` rows the
    class head takes as they are: text queries L2-normalised (what the text tower's projection
    gives, normalised, as in transformers' forward), image queries the class embedding of one
    predicted box (the class head normalises both)."""

    family: DetectorFamily

    # ---- backend hooks -------------------------------------------------------------------------
    @abstractmethod
    def _preprocess(self, images: list[Any]) -> torch.Tensor:
        """RGB PIL images -> a [N, 3, S, S] float tensor (the checkpoint's own processor)."""

    @abstractmethod
    def _image_features(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                              torch.Tensor | None]:
        """Pixels -> (patch tokens, boxes cxcywh, class embeddings, objectness logits or None)."""

    @abstractmethod
    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]: ...

    @abstractmethod
    def _text_features(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Token inputs -> projected text embeddings [Q, D] (not normalised)."""

    @abstractmethod
    def _class_logits(self, tokens: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """Patch tokens [N, P, H] and query embeddings [N, Q, D] -> class logits [N, P, Q]."""

    @abstractmethod
    def box_scale(self, size: tuple[int, int]) -> tuple[float, float]:
        """(sx, sy) mapping the model frame's [0, 1] to pixels of an image of ``size`` (height, width)."""

    @abstractmethod
    def query_token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens each text takes, start and end tokens included."""

    @property
    @abstractmethod
    def max_query_tokens(self) -> int:
        """The longest query the text tower reads (start and end tokens included)."""

    # ---- public API ----------------------------------------------------------------------------
    def preprocess(self, images: Sequence[ImageInput]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Decode (pixel limit checked before decoding) and transform images: ([N, 3, S, S] CPU float32,
        [(height, width), ...] of the decoded images)."""
        pil = decode_images(list(images), self.runtime.max_image_pixels)
        return self._preprocess(pil), [(im.height, im.width) for im in pil]

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> ImageFeatures:
        """The image tower and the per-patch heads, once per image, batched by ``max_batch``."""
        if len(pixels) != len(sizes):
            raise InvalidInput(f"{len(pixels)} images but {len(sizes)} sizes")
        parts = []
        for start in range(0, len(pixels), self.runtime.max_batch):
            chunk = pixels[start:start + self.runtime.max_batch].to(self.device, self.dtype)
            tokens, boxes, class_embeds, objectness = self._image_features(chunk)
            parts.append(ImageFeatures(tokens, boxes.float(), class_embeds, objectness,
                                       list(sizes[start:start + self.runtime.max_batch])))
        return ImageFeatures.concat(parts)

    def encode_images(self, images: Sequence[ImageInput]) -> ImageFeatures:
        return self.encode_pixels(*self.preprocess(images))

    def check_queries(self, texts: Sequence[str], field: str = "queries") -> list[str]:
        """Non-empty strings the text tower can read whole, or :class:`InvalidInput` naming the item.

        OWL-ViT reads at most ``max_query_tokens`` tokens. Its original tokenizer cut longer queries
        without their end token (the pooled position then holds a word, not the summary) and
        transformers' processor fails on them, so a longer query is refused rather than guessed at.
        """
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InvalidInput(f"expected a string, got {type(t).__name__}", item=i, field=field)
            if not t.strip():
                raise InvalidInput("empty query: give a description of the object to find", item=i, field=field)
        for i, n in enumerate(self.query_token_counts(texts)):
            if n > self.max_query_tokens:
                raise InvalidInput(f"query {texts[i]!r} is {n} tokens; {self.family} reads at most "
                                   f"{self.max_query_tokens} (start and end tokens included): shorten it",
                                   item=i, field=field)
        return texts

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Text queries -> float32 [Q, D], L2-normalised (the text tower once per query)."""
        if isinstance(texts, str):
            texts = [texts]
        texts = self.check_queries(texts)
        if not texts:
            raise InvalidInput("no queries given (empty list)", field="queries")
        out = []
        for start in range(0, len(texts), self.runtime.max_batch):
            chunk = texts[start:start + self.runtime.max_batch]
            inputs = {k: v.to(self.device) for k, v in self._tokenize(chunk).items()}
            emb = self._text_features(inputs).float()
            out.append((emb / torch.linalg.norm(emb, ord=2, dim=-1, keepdim=True)).cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    @torch.inference_mode()
    def class_logits(self, features: ImageFeatures, queries: np.ndarray) -> torch.Tensor:
        """Class logits [N, P, Q] (float32, CPU) of every patch of every image against ``queries`` [Q, D]."""
        q = torch.as_tensor(np.asarray(queries, np.float32), device=self.device).to(self.dtype)
        out = []
        for start in range(0, len(features), self.runtime.max_batch):
            tokens = features.tokens[start:start + self.runtime.max_batch]
            out.append(self._class_logits(tokens, q.unsqueeze(0).expand(len(tokens), -1, -1)).float().cpu())
        return torch.cat(out)

    @torch.inference_mode()
    def image_query(self, features: ImageFeatures, box: Box | None = None) -> tuple[np.ndarray, int]:
        """The query embedding [D] of one encoded query image, and the index of the patch it came from.

        Without a box, each family's own rule (transformers' ``embed_image_query``): OWL-ViT takes the
        predicted boxes within 80% of the best IoU with the whole image and, among them, the one whose
        class embedding is least similar to the image's mean embedding (only one box per object is
        trained to be "the object", the rest are background); OWLv2 takes the box of highest
        objectness. With a box (x0, y0, x1, y1 in the query image's pixels) both families use the
        original OWL-ViT rule with that box in place of the whole image (scenic's
        ``embed_image_query``; generalised IoU when no predicted box overlaps it).
        """
        from torchvision.ops import box_iou, generalized_box_iou

        if len(features) != 1:
            raise InvalidInput(f"image_query takes one encoded image, got {len(features)}")
        class_embeds = features.class_embeds[0].float()
        if box is None and features.objectness is not None:
            index = int(features.objectness[0].argmax())
            return class_embeds[index].cpu().numpy(), index
        target = torch.tensor([[0.0, 0.0, 1.0, 1.0]]) if box is None else self.to_model_frame(box, features.sizes[0])
        pred = center_to_corners(features.boxes[0].float().cpu())
        ious = box_iou(target, pred)[0]
        if torch.all(ious == 0.0):
            ious = generalized_box_iou(target, pred)[0]
        selected = (ious >= ious.max() * QUERY_IOU_FRACTION).nonzero()[:, 0]
        if selected.numel() == 0:  # every generalised IoU negative: 80% of the best is above it
            selected = ious.argmax().reshape(1)
        mean_sim = class_embeds[selected.to(class_embeds.device)] @ class_embeds.mean(0)
        index = int(selected[int(mean_sim.argmin())])
        return class_embeds[index].cpu().numpy(), index

    def to_pixels(self, boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Boxes (cx, cy, w, h) in the model frame -> (x0, y0, x1, y1) in pixels of the original image."""
        sx, sy = self.box_scale(size)
        return center_to_corners(boxes.float()) * torch.tensor([sx, sy, sx, sy], dtype=torch.float32,
                                                              device=boxes.device)

    def to_model_frame(self, box: Box, size: tuple[int, int]) -> torch.Tensor:
        """A box (x0, y0, x1, y1) in pixels of an image of ``size`` -> [1, 4] in the model frame."""
        sx, sy = self.box_scale(size)
        x0, y0, x1, y1 = box
        return torch.tensor([[x0 / sx, y0 / sy, x1 / sx, y1 / sy]], dtype=torch.float32)

    def info(self) -> dict[str, Any]:
        return {
            "spec": self.spec.raw,
            "canonical_spec": self.spec.canonical,
            "backend": self.spec.backend,
            "family": self.family,
            "max_query_tokens": self.max_query_tokens,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "fingerprint": self.fingerprint,
            "parameters": sum(p.numel() for p in self.model.parameters()),
        }
