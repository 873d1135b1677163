"""``PixelText``: image(s) + labels -> per-label score maps and a segmentation.

Methods: the training-free ones of :mod:`vlserve.dense.towers` on any CLIP image tower they apply
to, and ``denseclip`` where a DenseCLIP head trained for this encoder is loaded
(:mod:`vlserve.dense.head`). Training-free methods score labels by the cosine with the label's text
embedding, averaged over the prompt templates (default one: ``"a photo of a {}."``) and cached by
(model fingerprint, prompt); pixels whose best score is under ``background_threshold`` are
background. The DenseCLIP head has its own learned background label, so background comes from the
argmax (a threshold can still be given: on its softmax probability, so useful values are in [0, 1]);
prompt templates apply to the training-free methods only (the head has its learned context).

Images are resized to the tower's (or head's) square input size, whole, not cropped, so every pixel
of the image has a score; maps are then upsampled to the output size: the image's own size, scaled
down to at most ``MAX_OUTPUT_SIDE`` on its longer side (a 4000x3000 photo gives 512x384 maps), or
a smaller ``output_side`` when asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vlserve.dense.maps import BACKGROUND, score_maps, segment
from vlserve.dense.towers import METHODS, dense_embeddings, normalise, resize_whole
from vlserve.errors import InvalidInput, Unsupported
from vlserve.models.images import ImageInput, decode_images
from vlserve.models.text_cache import TextEmbeddingCache

MAX_LABELS = 256
MAX_TEMPLATES = 64
MAX_OUTPUT_SIDE = 512
MAX_SCORE_VALUES = 2**26  # label x pixel scores one request may return (128 MB as FP16)
MAX_WINDOWS = 256  # sliding windows per image
DEFAULT_TEMPLATES = ("a photo of a {}.",)
DENSECLIP = "denseclip"


@dataclass
class Segmentation:
    """One image's result: ``scores`` [L, h, w] (cosine for training-free methods, softmax probability
    for ``denseclip``), ``labels`` [h, w] int32 (label index, ``-1`` background), the image's size."""

    scores: np.ndarray
    segmentation: np.ndarray
    image_size: tuple[int, int]  # (H, W) of the input image
    method: str


def output_size(image_size: tuple[int, int], side: int | None) -> tuple[int, int]:
    """The maps' (h, w): the image's aspect, longer side at most ``side`` (default MAX_OUTPUT_SIDE)."""
    limit = min(side or MAX_OUTPUT_SIDE, MAX_OUTPUT_SIDE)
    h, w = image_size
    scale = min(1.0, limit / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def _check_budget(sizes: Sequence[tuple[int, int]], n_labels: int, side: int | None) -> None:
    """Refuse a request whose score maps would exceed MAX_SCORE_VALUES (labels x map pixels, summed
    over its images), before any map is made."""
    total = sum(n_labels * h * w for h, w in (output_size(s, side) for s in sizes))
    if total > MAX_SCORE_VALUES:
        raise InvalidInput(f"{len(sizes)} images x {n_labels} labels at these map sizes are {total:,} scores; at "
                           f"most {MAX_SCORE_VALUES:,} per request: send fewer images or labels, or a smaller "
                           "output_side", field="labels")


def _mean_std(encoder: Any) -> tuple[list[float], list[float]]:
    visual = getattr(encoder.model, "visual", None)
    if visual is not None and getattr(visual, "image_mean", None) is not None:
        return list(visual.image_mean), list(visual.image_std)
    processor = getattr(encoder, "_image_processor", None)
    if processor is not None:
        return list(processor.image_mean), list(processor.image_std)
    raise Unsupported(f"dense maps: no image normalisation known for {type(encoder).__name__}", field="model")


class PixelText:
    """Pixel-text maps for one dual encoder (and, optionally, its DenseCLIP head)."""

    def __init__(self, encoder: Any, head_dir: Path | None = None, cache: TextEmbeddingCache | None = None) -> None:
        if getattr(encoder, "family", None) == "align":
            raise Unsupported("dense maps need a CLIP-style image tower (ViT, or ResNet with attention pooling); "
                              "ALIGN's EfficientNet has no such last step", field="model")
        self.encoder = encoder
        self.cache = cache or TextEmbeddingCache()
        self.mean, self.std = _mean_std(encoder)
        self.head = None
        self.head_meta: dict[str, Any] = {}
        if head_dir is not None:
            from vlserve.dense.head import load_head

            self.head, self.head_meta = load_head(head_dir, encoder.fingerprint)
            self.head.to(encoder.device)

    @property
    def methods(self) -> tuple[str, ...]:
        return METHODS + ((DENSECLIP,) if self.head is not None else ())

    def check(self, labels: Sequence[str], method: str, background_threshold: float | None,
              output_side: int | None) -> None:
        """Refuse a bad request before any image is decoded."""
        if not labels:
            raise InvalidInput("no labels given: name at least one label", field="labels")
        if len(labels) > MAX_LABELS:
            raise InvalidInput(f"{len(labels)} labels; at most {MAX_LABELS} per request", field="labels")
        for i, label in enumerate(labels):
            if not label.strip():
                raise InvalidInput("empty label", field="labels", item=i)
        if method == DENSECLIP and self.head is None:
            raise Unsupported("no DenseCLIP head is loaded for this model (deploy one with DENSE_HEAD, or train "
                              "one with `vlserve dense train`)", field="method")
        if method not in self.methods:
            raise InvalidInput(f"unknown dense method {method!r}; methods: {', '.join(self.methods)}",
                               field="method")
        if background_threshold is not None and not -1.0 <= background_threshold <= 1.0:
            raise InvalidInput(f"background threshold {background_threshold} is outside [-1, 1]",
                               field="background_threshold")
        if output_side is not None and not 1 <= output_side <= MAX_OUTPUT_SIDE:
            raise InvalidInput(f"output side {output_side} is outside 1..{MAX_OUTPUT_SIDE}", field="output_side")

    def pixels(self, images: Sequence[ImageInput], size: int | tuple[int, int]) -> tuple[torch.Tensor,
                                                                                           list[tuple[int, int]]]:
        """Decoded images resized whole to ``size`` and normalised; their original (H, W)."""
        pil = decode_images(list(images), self.encoder.runtime.max_image_pixels)
        return self._tensor(pil, size), [(p.height, p.width) for p in pil]

    def _tensor(self, pil: Sequence[Any], size: int | tuple[int, int]) -> torch.Tensor:
        side = (size, size) if isinstance(size, int) else size
        x = normalise(np.stack([resize_whole(p, side) for p in pil]), self.mean, self.std)
        return x.to(self.encoder.device, self.encoder.dtype)

    def label_embeddings(self, labels: Sequence[str], templates: Sequence[str] | None) -> torch.Tensor:
        """``[L, D]`` text embeddings: each label's prompts (one per template) averaged, L2-normalised."""
        templates = list(templates or DEFAULT_TEMPLATES)
        if len(templates) > MAX_TEMPLATES:
            raise InvalidInput(f"{len(templates)} templates; at most {MAX_TEMPLATES}", field="templates")
        for i, t in enumerate(templates):
            if t.count("{}") != 1:
                raise InvalidInput(f"template {t!r} must hold exactly one {{}} for the label", field="templates",
                                   item=i)
        prompts = [t.replace("{}", label) for label in labels for t in templates]
        emb = torch.from_numpy(self.cache.encode(self.encoder, prompts)).view(len(labels), len(templates), -1)
        return F.normalize(emb.mean(dim=1), dim=-1)

    @torch.no_grad()
    def segment(self, images: Sequence[ImageInput], labels: Sequence[str], method: str = "maskclip",
                background_threshold: float | None = None, output_side: int | None = None,
                templates: Sequence[str] | None = None, stride: int | None = None,
                slide_side: int | None = None) -> list[Segmentation]:
        """Score maps and a segmentation per image (labels and options checked first). With ``stride``,
        sliding-window inference (training-free methods): see :meth:`_slide`."""
        self.check(labels, method, background_threshold, output_side)
        if not images:
            raise InvalidInput("no images given (empty list)", field="images")
        if method == DENSECLIP:
            if stride is not None:
                raise InvalidInput("stride (sliding windows) applies to the training-free methods; the DenseCLIP "
                                   "head reads the whole image", field="stride")
            return self._denseclip(images, labels, background_threshold, output_side)
        text = self.label_embeddings(labels, templates)
        if stride is not None:
            return self._slide(images, text, method, background_threshold, output_side, stride, slide_side)
        pixels, sizes = self.pixels(images, self.encoder.image_size)
        _check_budget(sizes, len(labels), output_side)
        step = max(1, self.encoder.runtime.max_batch)
        dense = torch.cat([dense_embeddings(self.encoder.model, pixels[i:i + step], method).float().cpu()  # type: ignore[arg-type]
                           for i in range(0, len(pixels), step)])
        out = []
        for d, size in zip(dense, sizes, strict=True):
            scores = score_maps(d[None], text, output_size(size, output_side))
            out.append(Segmentation(scores[0].numpy(), segment(scores, background_threshold)[0].int().numpy(),
                                    size, method))
        return out

    def _slide(self, images: Sequence[ImageInput], text: torch.Tensor, method: str,
               background_threshold: float | None, output_side: int | None, stride: int,
               slide_side: int | None) -> list[Segmentation]:
        """Sliding windows, as SCLIP and ClearCLIP evaluate: the image is resized (aspect kept) so its
        shorter side is ``slide_side`` (default twice the tower's input), windows of the tower's input
        size are taken every ``stride`` pixels (the last flush with the edge), each window's score maps
        are computed at its own size, and overlapping windows are averaged."""
        crop_h, crop_w = self.encoder.image_size
        side = slide_side or 2 * min(crop_h, crop_w)
        if not 1 <= stride <= min(crop_h, crop_w):
            raise InvalidInput(f"stride {stride} must be in 1..{min(crop_h, crop_w)} (the tower's input size)",
                               field="stride")
        if not min(crop_h, crop_w) <= side <= 4096:
            raise InvalidInput(f"slide side {side} must be in {min(crop_h, crop_w)}..4096", field="slide_side")
        out = []
        decoded = decode_images(list(images), self.encoder.runtime.max_image_pixels)
        _check_budget([(p.height, p.width) for p in decoded], len(text), output_side)
        for i, pil in enumerate(decoded):
            scale = side / min(pil.height, pil.width)
            h, w = max(crop_h, round(pil.height * scale)), max(crop_w, round(pil.width * scale))
            ys = sorted({*range(0, h - crop_h, stride), h - crop_h})
            xs = sorted({*range(0, w - crop_w, stride), w - crop_w})
            if len(ys) * len(xs) > MAX_WINDOWS:
                raise InvalidInput(f"{len(ys) * len(xs)} sliding windows for image {i} ({pil.width}x{pil.height} "
                                   f"resized to {w}x{h}); at most {MAX_WINDOWS}: use a larger stride",
                                   field="stride", item=i)
            full = self._tensor([pil], (h, w))
            windows = torch.cat([full[:, :, y:y + crop_h, x:x + crop_w] for y in ys for x in xs])
            step = max(1, self.encoder.runtime.max_batch)
            dense = torch.cat([dense_embeddings(self.encoder.model, windows[j:j + step], method).float().cpu()  # type: ignore[arg-type]
                               for j in range(0, len(windows), step)])
            total = torch.zeros(len(text), h, w)
            count = torch.zeros(1, h, w)
            for d, (y, x) in zip(dense, [(y, x) for y in ys for x in xs], strict=True):
                total[:, y:y + crop_h, x:x + crop_w] += score_maps(d[None], text, (crop_h, crop_w))[0]
                count[:, y:y + crop_h, x:x + crop_w] += 1
            size = (pil.height, pil.width)
            scores = F.interpolate((total / count)[None], size=output_size(size, output_side), mode="bilinear",
                                   align_corners=False)
            out.append(Segmentation(scores[0].numpy(), segment(scores, background_threshold)[0].int().numpy(),
                                    size, method))
        return out

    def _denseclip(self, images: Sequence[ImageInput], labels: Sequence[str], background_threshold: float | None,
                   output_side: int | None) -> list[Segmentation]:
        from vlserve.dense.towers import pyramid

        head = self.head
        assert head is not None
        pixels, sizes = self.pixels(images, head.cfg.input_size)
        _check_budget(sizes, len(labels), output_side)
        text = head.encode_labels(self.encoder.model, self.encoder._tokenizer, list(labels))
        parts = []
        step = max(1, min(self.encoder.runtime.max_batch, 8))  # the head's label channels: [n, L, C, h, w]
        for i in range(0, len(pixels), step):
            pyr = pyramid(self.encoder.model, pixels[i:i + step])
            parts.append(head.read(pyr, text)[0])
        logits = torch.cat(parts)
        out = []
        for row, size in zip(logits.cpu(), sizes, strict=True):
            probs = torch.softmax(F.interpolate(row[None], size=output_size(size, output_side), mode="bilinear",
                                                align_corners=False), dim=1)[0]
            best, index = probs.max(dim=0)
            seg = index - 1  # background (0) -> -1
            if background_threshold is not None:
                seg = torch.where(best < background_threshold, torch.full_like(seg, BACKGROUND), seg)
            out.append(Segmentation(probs[1:].numpy(), seg.int().numpy(), size, DENSECLIP))
        return out
