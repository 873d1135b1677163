"""What the tabs draw: labelled boxes, a segmentation overlay with its legend and heatmaps, a confusion
matrix. Plain PIL and numpy (the colours are the CLI's, from :mod:`vlserve.dense.render`)."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from vlserve.dense.render import heatmap, label_colour, overlay

__all__ = ["boxes_picture", "confusion_picture", "decode_png", "heatmap", "open_upright", "overlay"]


def open_upright(data: bytes) -> Image.Image:
    """An uploaded image as the model sees it: EXIF-upright RGB."""
    return ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")


def decode_png(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def boxes_picture(image: Image.Image, boxes: list[dict[str, Any]]) -> Image.Image:
    """The image with each box outlined in its query's colour and labelled "query 0.87"."""
    out = image.convert("RGB").copy()
    scale = max(1, round(max(out.size) / 256))
    draw = ImageDraw.Draw(out)
    for box in boxes:
        colour = label_colour(int(box["query"]))
        x0, y0, x1, y1 = (float(v) for v in box["box_xyxy"])
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=2 * scale)
        text = f"{box['label']} {box['score']:.2f}"
        tx, ty = x0, max(0.0, y0 - 11 * scale)
        left, top, right, bottom = draw.textbbox((tx, ty), text)
        draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=colour)
        draw.text((tx, ty), text, fill=(255, 255, 255))
    return out


def confusion_picture(matrix: np.ndarray, classes: list[str], cell: int = 44) -> Image.Image:
    """A row-normalised confusion matrix (rows: truth, columns: prediction) with counts in the cells."""
    n = len(classes)
    margin = 8 + 7 * max(len(c) for c in classes)
    size = (margin + n * cell + 8, margin + n * cell + 8)
    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    rows = matrix / np.maximum(1, matrix.sum(1, keepdims=True))
    ramp = np.asarray(heatmap(np.linspace(0, 1, 256)[None, :]))[0]
    for i in range(n):
        draw.text((4, margin + i * cell + cell // 2 - 5), classes[i], fill=(0, 0, 0))
        for j in range(n):
            x, y = margin + j * cell, margin + i * cell
            r, g, b = (int(v) for v in ramp[int(rows[i, j] * 255)])
            draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=(r, g, b))
            text = str(int(matrix[i, j]))
            ink = (0, 0, 0) if rows[i, j] > 0.6 else (255, 255, 255)
            _, _, right, bottom = draw.textbbox((0, 0), text)
            draw.text((x + (cell - right) // 2, y + (cell - bottom) // 2), text, fill=ink)
    for j in range(n):  # column names, written down the top margin
        label = Image.new("RGB", (margin - 4, 12), (255, 255, 255))
        ImageDraw.Draw(label).text((2, 0), classes[j], fill=(0, 0, 0))
        turned = label.rotate(90, expand=True)
        img.paste(turned, (margin + j * cell + cell // 2 - 6, 4))
    return img
