"""Toy world v2: shapes as people draw them.

Each object is a shape at any rotation, with a readable aspect (see :mod:`vlserve.toyworld.drawing`),
drawn in one of three techniques: ``filled`` (flat, gradient, striped, dotted, checkered or textured
paint, sometimes with a darker border), ``outline`` (a stroke of varied width) or ``hand-drawn`` (a
jittered pen path with uneven pressure that may not close, as an outline or over a wobbly fill),
with or without anti-aliasing. Backgrounds range from flat paper to cluttered; images are 64 to
224 px; some are blurred and most carry noise or JPEG artefacts.

Masks are the pixels each object paints (coverage >= 0.5) that no later object covers, and boxes
are the tight extent of those pixels, so detection and pixel-text labels stay exact. Everything is
drawn from one ``numpy.random.Generator``: a scene is a pure function of its seed.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from vlserve.toyworld.drawing import (
    FILL_WORDS,
    FILLS,
    coverage,
    hand_drawn_path,
    paint,
    place,
    sample_colour,
    tint,
    unit_outline,
)
from vlserve.toyworld.scene import MIN_VISIBLE_FRACTION, Scene, ToyObject, background, pick_attributes

IMAGE_SIZES = (64, 64, 80, 96, 112, 128, 160, 192, 224)
SIZE_FRACTIONS = {"small": (0.24, 0.36), "large": (0.42, 0.64)}  # diameter / image side
TECHNIQUES = {"filled": 0.4, "outline": 0.3, "hand-drawn": 0.3}
FILL_P = {"flat": 0.35, "gradient": 0.2, "striped": 0.12, "dotted": 0.11, "checkered": 0.11, "textured": 0.11}
BACKGROUNDS = {"paper": 0.3, "blotchy": 0.25, "gradient": 0.15, "cluttered": 0.2, "dark": 0.1}
STYLE_TAGS = ("filled", "outline", "hand-drawn", *[w for w in FILL_WORDS.values() if w])


def _pick(rng: np.random.Generator, probs: dict[str, float]) -> str:
    keys = list(probs)
    p = np.asarray([probs[k] for k in keys])
    return str(keys[int(rng.choice(len(keys), p=p / p.sum()))])


def draw_background(rng: np.random.Generator, size: int, kind: str | None = None) -> np.ndarray:
    """Low-saturation background ``float32 [size, size, 3]``: paper, blotchy, gradient, cluttered, dark."""
    kind = kind or _pick(rng, BACKGROUNDS)
    if kind == "blotchy":
        return background(rng, size)
    if kind == "dark":
        return np.full((size, size, 3), rng.uniform(20, 80), np.float32) + rng.normal(0, 5, 3).astype(np.float32)
    if kind == "gradient":
        a, b = rng.uniform(90, 240, 2)
        angle = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:size, 0:size] / size
        t = np.clip(xx * math.cos(angle) + yy * math.sin(angle), 0, 1)[..., None]
        img = a + (b - a) * t + rng.normal(0, 6, size=3)
        return img.astype(np.float32) + rng.standard_normal((size, size, 3), dtype=np.float32) * 2
    # paper, and the paper under clutter
    img = np.full((size, size, 3), rng.uniform(195, 250), np.float32) + rng.normal(0, 5, 3).astype(np.float32)
    img += rng.standard_normal((size, size, 1), dtype=np.float32) * rng.uniform(1, 4)
    if kind == "cluttered":
        if rng.random() < 0.5:
            img = background(rng, size)
        canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(canvas)
        for _ in range(int(rng.integers(6, 20))):
            grey = int(rng.uniform(40, 220))
            col = tuple(int(np.clip(grey + rng.normal(0, 10), 0, 255)) for _ in range(3))
            width = max(1, int(rng.uniform(0.5, 2.5) * size / 64))
            x0, y0, x1, y1 = (float(v) for v in rng.uniform(-0.1, 1.1, 4) * size)
            if rng.random() < 0.6:
                draw.line([(x0, y0), (x1, y1)], fill=col, width=width)
            else:
                box = [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]
                draw.arc(box, float(rng.uniform(0, 360)), float(rng.uniform(0, 360)), fill=col, width=width)
        img = np.asarray(canvas, dtype=np.float32)
    elif rng.random() < 0.25:  # ruled or graph paper
        step = int(rng.integers(6, 14) * size / 64)
        line = rng.uniform(0.8, 0.93)
        img[::step] *= line
        if rng.random() < 0.5:
            img[:, ::step] *= line
    return img


def _draw_object(rng: np.random.Generator, shape: str, colour: str, size: int, center: tuple[float, float],
                 radius: float, angle: float, outline: np.ndarray,
                 easy: bool = False) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Coverage, paint and style tags of one object (``easy``: flat-filled and anti-aliased)."""
    aa = easy or bool(rng.random() < 0.6)
    technique = "filled" if easy else _pick(rng, TECHNIQUES)
    rgb = sample_colour(rng, colour)
    pts = place(outline, center, radius, angle)
    stroke = max(1.0, radius * rng.uniform(0.08, 0.3))
    if technique == "outline":
        cov = coverage(size, aa, path=pts, widths=stroke)
        return cov, paint(rng, "flat", rgb, size, center, radius), ("outline",)
    if technique == "filled":
        fill = "flat" if easy else _pick(rng, FILL_P)
        cov = coverage(size, aa, polygon=pts)
        pnt = paint(rng, fill, rgb, size, center, radius)
        if not easy and rng.random() < 0.25:  # a darker border
            border = coverage(size, aa, path=pts, widths=max(1.0, radius * rng.uniform(0.05, 0.12)))
            edge = tint(rgb, -rng.uniform(0.3, 0.5))
            pnt = pnt * (1 - border[..., None]) + edge * border[..., None]
            cov = np.maximum(cov, border)
        word = FILL_WORDS[fill]
        return cov, pnt, ("filled", word) if word else ("filled",)
    # hand-drawn: a wobbly pen path with uneven pressure, over a wobbly fill or alone
    path, closed = hand_drawn_path(rng, pts, radius)
    t = np.linspace(0, 2 * math.pi, len(path))
    pressure = 0.75 + 0.35 * np.sin(t * rng.integers(1, 4) + rng.uniform(0, 2 * math.pi))
    widths = np.maximum(1.0, stroke * pressure * rng.uniform(0.6, 1.0))
    line = coverage(size, aa, path=path, closed=closed, widths=widths)
    if rng.random() < 0.6:
        return line, paint(rng, "flat", rgb, size, center, radius), ("hand-drawn", "outline")
    body, _ = hand_drawn_path(rng, pts, radius)
    fill_cov = coverage(size, aa, polygon=body)
    pnt = paint(rng, "flat" if rng.random() < 0.6 else "gradient", rgb, size, center, radius)
    edge = tint(rgb, -rng.uniform(0.25, 0.45))
    pnt = pnt * (1 - line[..., None]) + edge * line[..., None]
    return np.maximum(fill_cov, line), pnt, ("hand-drawn", "filled")


def _finish(rng: np.random.Generator, img: np.ndarray, easy: bool = False) -> np.ndarray:
    """Blur, noise and JPEG artefacts (``easy``: noise only); returns uint8."""
    size = img.shape[0]
    if easy:
        return np.clip(img + rng.standard_normal(img.shape, dtype=np.float32) * 4, 0, 255).astype(np.uint8)
    noise = rng.standard_normal(img.shape, dtype=np.float32) * rng.uniform(0, 8)
    out = np.clip(img + noise, 0, 255).astype(np.uint8)
    pil = Image.fromarray(out)
    if rng.random() < 0.3:
        pil = pil.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.0)) * size / 64))
    if rng.random() < 0.5:
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=int(rng.integers(15, 91)))
        pil = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return np.asarray(pil, dtype=np.uint8)


def render_scene_v2(rng: np.random.Generator, n_objects: int | None = None, image_size: int | None = None,
                    shape: str | None = None, colour: str | None = None, angle: float | None = None,
                    easy: float = 0.0, forced: Sequence[tuple[str, str]] | None = None) -> Scene:
    """Draw one v2 scene. ``shape``/``colour``/``angle`` force the first object's attributes;
    ``forced`` gives the (shape, colour) of every object (a composed scene for demos and tests).

    ``easy`` is the probability that the scene is drawn the v1 way instead (flat-filled, nearly
    upright shapes on a paper or blotchy background, no blur or JPEG): a training curriculum starts
    there and anneals it to 0. Evaluation splits always use 0.
    """
    is_easy = bool(easy) and bool(rng.random() < easy)
    if forced:
        n_objects = len(forced)
    if n_objects is None:
        n_objects = int(rng.choice([1, 2, 3], p=[0.5, 0.33, 0.17]))
    size = int(image_size or rng.choice(IMAGE_SIZES))
    img = draw_background(rng, size, _pick(rng, {"paper": 0.5, "blotchy": 0.5}) if is_easy else None)
    placed: list[tuple[str, str, str, tuple[float, float], float, np.ndarray, np.ndarray, tuple[str, ...]]] = []
    top = np.full((size, size), -1, dtype=np.int16)  # index of the object painted last at each pixel
    for i in range(n_objects):
        for _attempt in range(20):
            shp, col, size_word = (pick_attributes(rng, True, *forced[i], SIZE_FRACTIONS) if forced else
                                   pick_attributes(rng, i == 0, shape, colour, SIZE_FRACTIONS))
            lo, hi = SIZE_FRACTIONS[size_word]
            radius = float(rng.uniform(lo, hi)) * size / 2
            ang = float(angle) if (i == 0 and angle is not None) else \
                float(rng.uniform(-0.3, 0.3) if is_easy else rng.uniform(0, 2 * math.pi))
            outline = unit_outline(shp, rng)
            extent = radius * float(np.hypot(outline[:, 0], outline[:, 1]).max()) * 1.1 + 1
            extent = min(extent, size / 2 - 1)
            center = (float(rng.uniform(extent, size - extent)), float(rng.uniform(extent, size - extent)))
            cov, pnt, style = _draw_object(rng, shp, col, size, center, radius, ang, outline, is_easy)
            painted = cov >= 0.5
            if painted.sum() < 4:
                continue
            trial = top.copy()
            trial[painted] = i
            ok = all((trial == j).sum() >= MIN_VISIBLE_FRACTION * p[6].sum()
                     for j, p in enumerate([*placed, (shp, col, size_word, center, ang, cov, painted, style)]))
            if ok:
                placed.append((shp, col, size_word, center, ang, cov, painted, style))
                img = img * (1 - cov[..., None]) + pnt * cov[..., None]
                top = trial
                break
    objects = []
    for i, (shp, col, size_word, center, ang, _cov, painted, style) in enumerate(placed):
        visible = top == i
        ys, xs = np.nonzero(visible)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        objects.append(ToyObject(shp, col, size_word, center, visible, box, int(painted.sum()), style=style,
                                 image_size=size, angle=ang))
    return Scene(_finish(rng, img, is_easy), objects)


__all__ = ["BACKGROUNDS", "FILLS", "IMAGE_SIZES", "STYLE_TAGS", "TECHNIQUES", "draw_background", "render_scene_v2"]
