"""The held-out style family: a second rasteriser, written separately, never used in training.

Training scenes (:mod:`vlserve.toyworld.scene_v2`) are drawn with PIL polygons and strokes. This
module draws the same six shapes from **signed distance functions** instead (Inigo Quilez's exact
2-D SDFs: circle, box, equilateral triangle, five-point star, rhombus, cross), with its own
geometry, palette and finishing: flat fills or constant-width outlines with a one-pixel analytic
edge ramp, on flat or softly graded light backgrounds, with speckle noise and Gaussian blur, at
80-128 px. A model that learned "triangles" rather than the training rasteriser's triangles
recognises these; one that memorised the drawing does not.

``dashed`` outlines (a drawing technique absent from training entirely) are a separate, harder
stress set, reported on its own.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter

from vlserve.toyworld.scene import SHAPES, Scene, ToyObject

# an independent palette (not derived from the training colours)
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 40), "green": (40, 180, 70), "blue": (30, 90, 230),
    "yellow": (250, 220, 30), "purple": (150, 60, 200), "orange": (250, 140, 20),
}
HELDOUT_STYLES = ("flat", "outline")
_SIZE_RANGES = {"small": (0.17, 0.25), "large": (0.27, 0.35)}  # radius / image side


def _length(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.sqrt(x * x + y * y)


def _sd_box(x: np.ndarray, y: np.ndarray, bx: float, by: float) -> np.ndarray:
    dx, dy = np.abs(x) - bx, np.abs(y) - by
    return _length(np.maximum(dx, 0), np.maximum(dy, 0)) + np.minimum(np.maximum(dx, dy), 0)


def _sd_triangle(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    """Equilateral triangle of circumradius-ish ``r`` (apex up in y-up coordinates)."""
    k = math.sqrt(3.0)
    x = np.abs(x) - r
    y = y + r / k
    flip = x + k * y > 0
    x, y = np.where(flip, (x - k * y) / 2, x), np.where(flip, (-k * x - y) / 2, y)
    x = x - np.clip(x, -2 * r, 0)
    return -_length(x, y) * np.sign(y)


def _sd_star5(x: np.ndarray, y: np.ndarray, r: float, rf: float) -> np.ndarray:
    k1x, k1y = 0.809016994375, -0.587785252292
    k2x, k2y = -k1x, k1y
    x = np.abs(x)
    d = np.maximum(k1x * x + k1y * y, 0)
    x, y = x - 2 * d * k1x, y - 2 * d * k1y
    d = np.maximum(k2x * x + k2y * y, 0)
    x, y = x - 2 * d * k2x, y - 2 * d * k2y
    x = np.abs(x)
    y = y - r
    bax, bay = rf * -k1y, rf * k1x - 1
    h = np.clip((x * bax + y * bay) / (bax * bax + bay * bay), 0, r)
    return _length(x - bax * h, y - bay * h) * np.sign(y * bax - x * bay)


def _sd_rhombus(x: np.ndarray, y: np.ndarray, bx: float, by: float) -> np.ndarray:
    qx, qy = np.abs(x), np.abs(y)
    h = np.clip((-2 * (qx * bx - qy * by) + (bx * bx - by * by)) / (bx * bx + by * by), -1, 1)
    d = _length(qx - 0.5 * bx * (1 - h), qy - 0.5 * by * (1 + h))
    return d * np.sign(qx * by + qy * bx - bx * by)


def _sd_cross(x: np.ndarray, y: np.ndarray, arm: float, half_width: float) -> np.ndarray:
    x, y = np.abs(x), np.abs(y)
    x, y = np.maximum(x, y), np.minimum(x, y)
    qx, qy = x - arm, y - half_width
    k = np.maximum(qy, qx)
    wx = np.where(k > 0, qx, half_width - x)
    wy = np.where(k > 0, qy, -k)
    return np.sign(k) * _length(np.maximum(wx, 0), np.maximum(wy, 0))


def signed_distance(shape: str, x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    """Signed distance (pixels; negative inside) to a shape of size ``r`` centred on the origin."""
    if shape == "circle":
        return _length(x, y) - r
    if shape == "square":
        return _sd_box(x, y, 0.75 * r, 0.75 * r)
    if shape == "triangle":
        return _sd_triangle(x, -y, 0.9 * r)
    if shape == "star":
        return _sd_star5(x, -y, r, 0.45)
    if shape == "diamond":
        return _sd_rhombus(x, y, 0.58 * r, r)
    if shape == "cross":
        return _sd_cross(x, y, r, 0.3 * r)
    raise ValueError(f"no SDF for shape {shape!r}")


def _alpha(d: np.ndarray) -> np.ndarray:
    """One-pixel analytic edge: coverage of a pixel whose centre is ``d`` px from the edge."""
    return np.clip(0.5 - d, 0, 1).astype(np.float32)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    grey = rng.uniform(170, 250)
    tint_ = rng.uniform(-8, 8, 3)
    img = np.full((size, size, 3), grey, np.float32) + tint_.astype(np.float32)
    if rng.random() < 0.5:  # soft vertical grade
        ramp = np.linspace(0, rng.uniform(-40, 40), size, dtype=np.float32)
        img += ramp[:, None, None]
    return img


def render_heldout(rng: np.random.Generator, n_objects: int | None = None, style: str | None = None,
                   shape: str | None = None, colour: str | None = None) -> Scene:
    """One scene from the held-out rasteriser; ``style`` is ``flat``, ``outline`` or ``dashed``."""
    size = int(rng.integers(80, 129))
    n_objects = n_objects or int(rng.choice([1, 2], p=[0.7, 0.3]))
    img = _background(rng, size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    taken = np.zeros((size, size), bool)
    objects: list[ToyObject] = []
    for i in range(n_objects):
        for _attempt in range(30):
            shp = shape if (i == 0 and shape) else str(rng.choice(SHAPES))
            col = colour if (i == 0 and colour) else str(rng.choice(list(PALETTE)))
            size_word = str(rng.choice(list(_SIZE_RANGES)))
            r = float(rng.uniform(*_SIZE_RANGES[size_word])) * size
            cx, cy = (float(v) for v in rng.uniform(r + 1, size - r - 1, 2))
            angle = float(rng.uniform(0, 2 * math.pi))
            c, s = math.cos(angle), math.sin(angle)
            lx, ly = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
            d = signed_distance(shp, lx, ly, r)
            sty = style or str(rng.choice(HELDOUT_STYLES))
            if sty == "flat":
                alpha = _alpha(d)
            else:
                half = float(rng.uniform(1.0, 2.5)) * size / 96
                alpha = _alpha(np.abs(d) - half)
                if sty == "dashed":
                    period = rng.uniform(8, 14) * size / 96
                    along = np.arctan2(ly, lx) * r  # arc-length-like coordinate around the centre
                    alpha *= ((along / period) % 1.0 < 0.6).astype(np.float32)
            painted = alpha >= 0.5
            if painted.sum() < 4 or (painted & taken).any():
                continue
            rgb = np.clip(np.asarray(PALETTE[col], float) + rng.uniform(-15, 15, 3), 0, 255)
            img = img * (1 - alpha[..., None]) + rgb.astype(np.float32) * alpha[..., None]
            taken |= painted
            ys, xs = np.nonzero(painted)
            box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
            tags = ("filled",) if sty == "flat" else ("outline",) if sty == "outline" else ("outline", "dashed")
            objects.append(ToyObject(shp, col, size_word, (cx, cy), painted, box, int(painted.sum()), style=tags,
                                     image_size=size, angle=angle))
            break
    speckle = rng.random((size, size)) < rng.uniform(0.005, 0.03)
    img[speckle] = rng.uniform(0, 255, (int(speckle.sum()), 1)).astype(np.float32)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    out = out.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.4, 1.2))))
    return Scene(np.asarray(out), objects)


__all__ = ["HELDOUT_STYLES", "PALETTE", "render_heldout", "signed_distance"]
