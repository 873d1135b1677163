"""Encoded image files of every kind a user sends, written with PIL (no downloads)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

EXIF_ORIENTATION = 0x0112


def _scene(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth gradient with a few blocks: JPEG/WebP keep it recognisable, and flips show."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([255 * x / max(w - 1, 1), 255 * y / max(h - 1, 1), 128 + 0 * x], -1)
    for _ in range(4):
        y0, x0 = rng.integers(0, max(h - 4, 1)), rng.integers(0, max(w - 4, 1))
        img[y0:y0 + max(h // 4, 1), x0:x0 + max(w // 5, 1)] = rng.integers(0, 256, 3)
    return img.astype(np.uint8)


def image_files() -> dict[str, bytes]:
    """Kind -> encoded bytes: JPEG, PNG with alpha, greyscale PNG, palette PNG, 16-bit PNG, WebP, an
    EXIF-rotated JPEG (orientation 6: the stored pixels are a quarter turn from what a viewer shows),
    a 1x1 PNG and a 4000x300 JPEG."""
    out: dict[str, bytes] = {}

    def save(kind: str, img: Image.Image, fmt: str, **kw: object) -> None:
        buf = io.BytesIO()
        img.save(buf, format=fmt, **kw)
        out[kind] = buf.getvalue()

    rgb = Image.fromarray(_scene(48, 64, 0))
    save("jpeg", rgb, "JPEG", quality=92)
    rgba = np.dstack([_scene(40, 40, 1), np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (40, 1))])
    rgba[:10, :, 3] = 0  # fully transparent rows whose hidden colour is not white
    save("png_alpha", Image.fromarray(rgba, "RGBA"), "PNG")
    save("png_grey", Image.fromarray(_scene(36, 52, 2)[..., 0], "L"), "PNG")
    save("png_palette", rgb.quantize(colors=16), "PNG")
    grey16 = (np.linspace(0, 65535, 30 * 44).reshape(30, 44)).astype(np.uint16)
    save("png_16bit", Image.fromarray(grey16), "PNG")
    save("webp", Image.fromarray(_scene(50, 40, 3)), "WEBP", quality=90)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    save("jpeg_exif_rotated", Image.fromarray(_scene(40, 70, 4)), "JPEG", quality=92, exif=exif.tobytes())
    save("png_1x1", Image.fromarray(np.array([[[200, 30, 90]]], dtype=np.uint8)), "PNG")
    save("jpeg_4000x300", Image.fromarray(_scene(300, 4000, 5)), "JPEG", quality=90)
    return out


def write_image_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    ext = {"jpeg": ".jpg", "png": ".png", "webp": ".webp"}
    paths = {}
    for kind, data in image_files().items():
        p = folder / (kind + ext[kind.split("_")[0]])
        p.write_bytes(data)
        paths[kind] = p
    return paths


def png(arr: np.ndarray) -> bytes:
    """A uint8 HxWx3 array as PNG bytes (lossless: decoding gives the array back)."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()
