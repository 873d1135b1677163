"""Drawing primitives of toy world v2: shapes at any rotation, strokes, hand-drawn paths and paints.

A shape is a closed outline in unit coordinates (radius ~1, centred on the origin), given a
per-shape aspect range that keeps it readable as that shape (a square stays square; a diamond is a
clearly elongated rhombus, so a square turned by 45 degrees is never a diamond). Objects are drawn
as *coverage* maps in [0, 1] (supersampled 4x for anti-aliasing, or binary without it) and
composited with a paint field, so the visible pixels of each object are known exactly.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np
from PIL import Image, ImageDraw

from vlserve.toyworld.scene import COLOURS

SUPERSAMPLE = 4
FILLS = ("flat", "gradient", "striped", "dotted", "checkered", "textured")
# caption adjective for each fill (None: not worth mentioning)
FILL_WORDS = {"flat": None, "gradient": "shaded", "striped": "striped", "dotted": "dotted",
              "checkered": "checkered", "textured": "textured"}
_HUE_JITTER = {"red": 8.0, "orange": 5.0, "yellow": 5.0, "green": 10.0, "blue": 9.0, "purple": 8.0}


def unit_outline(shape: str, rng: np.random.Generator) -> np.ndarray:
    """Closed outline ``[K, 2]`` (x, y; y down) of one shape with a random, shape-preserving aspect."""
    if shape == "circle":
        t = np.linspace(0, 2 * math.pi, 72, endpoint=False)
        a = rng.uniform(0.95, 1.0)
        return np.stack([a * np.cos(t), np.sin(t)], 1)
    if shape == "square":
        s = 0.78
        return np.array([(-s, -s), (s, -s), (s, s), (-s, s)])
    if shape == "diamond":
        w = rng.uniform(0.5, 0.66)
        return np.array([(0.0, -1.0), (w, 0.0), (0.0, 1.0), (-w, 0.0)])
    if shape == "triangle":
        apex = rng.uniform(-0.45, 0.45)
        h = rng.uniform(0.85, 1.1)
        return np.array([(apex, -h), (0.97, 0.75), (-0.97, 0.75)])
    if shape == "star":
        inner = float(rng.uniform(0.38, 0.5))
        k = np.arange(10)
        radii = np.where(k % 2 == 0, 1.0, inner)
        phi = -math.pi / 2 + k * math.pi / 5
        return np.stack([radii * np.cos(phi), radii * np.sin(phi)], 1)
    if shape == "cross":
        w = rng.uniform(0.26, 0.4)
        return np.array([(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w),
                         (-1, w), (-1, -w), (-w, -w)], dtype=float)
    raise ValueError(f"no outline for shape {shape!r}")


def place(points: np.ndarray, center: tuple[float, float], radius: float, angle: float) -> np.ndarray:
    """Rotate by ``angle`` (radians), scale by ``radius`` and move to ``center`` (pixels)."""
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return points @ rot.T * radius + np.asarray(center)


def resample_closed(points: np.ndarray, step: float) -> np.ndarray:
    """Points every ``step`` pixels along the closed polygon (corners kept approximately)."""
    closed = np.vstack([points, points[:1]])
    seg = np.diff(closed, axis=0)
    lengths = np.hypot(seg[:, 0], seg[:, 1])
    total = float(lengths.sum())
    n = max(12, int(total / max(step, 0.5)))
    t = np.linspace(0, total, n, endpoint=False)
    cum = np.concatenate([[0.0], np.cumsum(lengths)])
    idx = np.clip(np.searchsorted(cum, t, side="right") - 1, 0, len(seg) - 1)
    frac = (t - cum[idx]) / np.maximum(lengths[idx], 1e-9)
    return closed[idx] + seg[idx] * frac[:, None]


def _smooth_noise(rng: np.random.Generator, n: int, amplitude: float, waves: int = 3) -> np.ndarray:
    """Periodic low-frequency noise along a closed path of ``n`` points."""
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    out = np.zeros(n)
    for k in range(1, waves + 1):
        out += rng.normal(0, 1) / k * np.sin(k * t + rng.uniform(0, 2 * math.pi))
    return amplitude * out / max(1e-9, np.abs(out).max())


def hand_drawn_path(rng: np.random.Generator, outline_px: np.ndarray, radius: float) -> tuple[np.ndarray, bool]:
    """A jittered, possibly unclosed version of a pixel outline (as a pen would draw it).

    Returns the path and whether it is closed. The wobble is low-frequency (the hand) plus a
    little high-frequency tremor; the path starts anywhere and stops short of (or overshoots) its
    start.
    """
    pts = resample_closed(outline_px, step=max(1.0, radius / 10))
    n = len(pts)
    centre = pts.mean(0)
    normal = pts - centre
    normal /= np.maximum(np.hypot(normal[:, 0], normal[:, 1]), 1e-9)[:, None]
    wobble = _smooth_noise(rng, n, rng.uniform(0.03, 0.08) * radius, waves=4)
    pts = pts + normal * wobble[:, None] + rng.normal(0, 0.012 * radius, size=pts.shape)
    start = int(rng.integers(n))
    pts = np.roll(pts, -start, axis=0)
    coverage = rng.uniform(0.86, 1.04)
    if coverage >= 1.0:  # overshoot past the start
        extra = int((coverage - 1.0) * n)
        return np.vstack([pts, pts[: extra + 1]]), True
    return pts[: max(3, int(coverage * n))], False


def coverage(size: int, aa: bool, *, polygon: np.ndarray | None = None, path: np.ndarray | None = None,
             closed: bool = True, widths: np.ndarray | float = 0.0) -> np.ndarray:
    """Coverage ``float32 [size, size]`` in [0, 1] of a filled polygon and/or a stroked path.

    With ``aa`` the drawing is supersampled 4x and box-filtered (anti-aliased edges); without it,
    pixels are on or off. ``widths`` is one stroke width, or one per path point (pen pressure).
    """
    ss = SUPERSAMPLE if aa else 1
    canvas = Image.new("L", (size * ss, size * ss), 0)
    draw = ImageDraw.Draw(canvas)
    if polygon is not None:
        draw.polygon([(float(x) * ss, float(y) * ss) for x, y in polygon], fill=255)
    if path is not None:
        w = np.broadcast_to(np.asarray(widths, dtype=float), (len(path),))
        pts, w = (np.vstack([path, path[:1]]), np.append(w, w[0])) if closed else (path, w)
        if np.ptp(w) < 1e-6:  # one width: a single polyline with round joints
            draw.line([(float(x) * ss, float(y) * ss) for x, y in pts], fill=255,
                      width=max(1, round(float(w[0]) * ss)), joint="curve")
            for x, y in (pts[0], pts[-1]):
                r = float(w[0]) * ss / 2
                draw.ellipse([x * ss - r, y * ss - r, x * ss + r, y * ss + r], fill=255)
        else:  # pressure varies along the stroke: segment by segment, round caps at each point
            for k in range(len(pts) - 1):
                (x0, y0), (x1, y1) = pts[k], pts[k + 1]
                wk = max(1.0, float(w[k]) * ss)
                draw.line([(x0 * ss, y0 * ss), (x1 * ss, y1 * ss)], fill=255, width=round(wk))
                r = wk / 2
                draw.ellipse([x0 * ss - r, y0 * ss - r, x0 * ss + r, y0 * ss + r], fill=255)
    if ss > 1:
        canvas = canvas.reduce(ss)
    return np.asarray(canvas, dtype=np.float32) / 255.0


def sample_colour(rng: np.random.Generator, name: str) -> np.ndarray:
    """An RGB shade (float 0..255) of a named colour: its hue jittered, saturation and value varied."""
    base = np.asarray(COLOURS[name], dtype=float) / 255
    h, s, v = colorsys.rgb_to_hsv(*base)
    h = (h + rng.uniform(-1, 1) * _HUE_JITTER[name] / 360) % 1.0
    s = float(np.clip(s * rng.uniform(0.8, 1.15), 0.6, 1.0))
    v = float(np.clip(v * rng.uniform(0.85, 1.1), 0.6 if name != "yellow" else 0.85, 1.0))
    return np.asarray(colorsys.hsv_to_rgb(h, s, v)) * 255


def tint(rgb: np.ndarray, amount: float) -> np.ndarray:
    """Mix towards white (``amount`` > 0) or black (< 0)."""
    return rgb + (255 - rgb) * amount if amount >= 0 else rgb * (1 + amount)


def paint(rng: np.random.Generator, fill: str, rgb: np.ndarray, size: int, center: tuple[float, float],
          radius: float) -> np.ndarray:
    """A paint field ``float32 [size, size, 3]``: the colour laid out as flat, gradient or a texture."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.empty((size, size, 3), dtype=np.float32)
    if fill == "flat":
        out[:] = rgb
    elif fill == "gradient":
        a = rng.uniform(0, 2 * math.pi)
        t = ((xx - center[0]) * math.cos(a) + (yy - center[1]) * math.sin(a)) / (2 * radius) + 0.5
        t = np.clip(t, 0, 1)[..., None]
        dark, light = tint(rgb, -rng.uniform(0.1, 0.25)), tint(rgb, rng.uniform(0.2, 0.4))
        out[:] = dark * (1 - t) + light * t
    else:
        period = max(3.0, radius * rng.uniform(0.3, 0.55))
        a = rng.uniform(0, math.pi)
        u = (xx * math.cos(a) + yy * math.sin(a)) / period
        v = (-xx * math.sin(a) + yy * math.cos(a)) / period
        if fill == "striped":
            on = (u % 1.0) < rng.uniform(0.45, 0.65)
        elif fill == "checkered":
            on = (np.floor(u) + np.floor(v)) % 2 == 0
        elif fill == "dotted":
            on = np.hypot(u % 1.0 - 0.5, v % 1.0 - 0.5) < rng.uniform(0.25, 0.38)
        elif fill == "textured":
            cells = max(2, int(size / max(2.0, radius * 0.25)))
            low = rng.normal(0, 1, size=(cells, cells)).astype(np.float32)
            field = np.asarray(Image.fromarray(low).resize((size, size), Image.Resampling.BILINEAR))
            on = field > 0
        else:
            raise ValueError(f"unknown fill {fill!r}")
        other = tint(rgb, rng.uniform(0.45, 0.7))
        out[:] = np.where(on[..., None], rgb, other)
    return out + rng.normal(0, 4, size=(1, 1, 3)).astype(np.float32)


__all__ = ["FILLS", "FILL_WORDS", "coverage", "hand_drawn_path", "paint", "place", "resample_closed",
           "sample_colour", "tint", "unit_outline"]
