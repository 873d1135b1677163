"""Pictures of a segmentation: the mask PNG, a colour overlay with a legend, per-label heatmaps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# label colours (tab10), background shown as the image itself
PALETTE = np.array([(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)], np.uint8)
# heatmap colours, low to high (viridis anchors)
_RAMP = np.array([(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)], np.float32)


def label_colour(i: int) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in PALETTE[i % len(PALETTE)])
    return r, g, b


def heatmap(scores: np.ndarray, lo: float | None = None, hi: float | None = None) -> Image.Image:
    """An RGB heatmap of one label's map, scaled to ``lo``..``hi`` (default: its own min..max)."""
    lo = float(np.nanmin(scores)) if lo is None else lo
    hi = float(np.nanmax(scores)) if hi is None else hi
    t = np.clip((scores - lo) / (hi - lo if hi > lo else 1.0), 0, 1) * (len(_RAMP) - 1)
    i = np.minimum(t.astype(np.int64), len(_RAMP) - 2)
    frac = (t - i)[..., None]
    rgb = _RAMP[i] * (1 - frac) + _RAMP[i + 1] * frac
    return Image.fromarray(rgb.astype(np.uint8))


def overlay(image: Image.Image, segmentation: np.ndarray, labels: list[str], alpha: float = 0.55) -> Image.Image:
    """The image (resized to the segmentation) with each label's pixels tinted, and a legend below."""
    h, w = segmentation.shape
    base = np.asarray(image.convert("RGB").resize((w, h), Image.Resampling.BILINEAR)).astype(np.float32)
    tint = base.copy()
    for i in range(len(labels)):
        tint[segmentation == i] = PALETTE[i % len(PALETTE)]
    mixed = np.where((segmentation >= 0)[..., None], base * (1 - alpha) + tint * alpha, base).astype(np.uint8)
    row = 16
    canvas = Image.new("RGB", (max(w, 160), h + row * (len(labels) + 1) + 4), "white")
    canvas.paste(Image.fromarray(mixed), (0, 0))
    draw = ImageDraw.Draw(canvas)
    entries = [(label, label_colour(i)) for i, label in enumerate(labels)] + [("background", (255, 255, 255))]
    for k, (label, colour) in enumerate(entries):
        y = h + 2 + k * row
        draw.rectangle((4, y + 2, 16, y + 13), fill=colour, outline=(0, 0, 0))
        draw.text((22, y + 2), label, fill=(0, 0, 0))
    return canvas


def write_outputs(out: Path, image: Image.Image, scores: np.ndarray, segmentation: np.ndarray,
                  labels: list[str]) -> dict[str, str]:
    """``mask.png`` (0 background, i + 1 for label i; 16-bit past 254 labels), ``overlay.png``,
    ``heatmap_<i>.png`` per label."""
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    mask = (segmentation + 1).astype(np.uint16 if len(labels) >= 255 else np.uint8)
    Image.fromarray(mask).save(out / "mask.png")
    written["mask"] = str(out / "mask.png")
    overlay(image, segmentation, labels).save(out / "overlay.png")
    written["overlay"] = str(out / "overlay.png")
    for i, label in enumerate(labels):
        path = out / f"heatmap_{i}.png"
        heatmap(scores[i]).save(path)
        written[f"heatmap:{label}"] = str(path)
    return written
