"""Procedural scenes: 1-3 coloured shapes on a noisy, blotchy background.

Everything is drawn from a ``numpy.random.Generator``, so a scene is a pure function of its seed.
Each object carries its *visible* instance mask (after occlusion by objects drawn later) and
the tight pixel box of that mask, so boxes and masks always agree with the pixels drawn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "diamond")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 170, 55),
    "blue": (35, 75, 215),
    "yellow": (235, 210, 35),
    "purple": (145, 55, 195),
    "orange": (245, 135, 25),
}
SIZES: dict[str, tuple[int, int]] = {"small": (18, 22), "large": (28, 34)}  # diameter range, px
IMAGE_SIZE = 64
MIN_VISIBLE_FRACTION = 0.6


@dataclass
class ToyObject:
    shape: str
    colour: str
    size: str
    center: tuple[float, float]  # (x, y) pixels
    mask: np.ndarray = field(repr=False)  # bool [H, W], visible pixels only
    box: tuple[int, int, int, int] = (0, 0, 0, 0)  # xyxy, exclusive max (COCO-style extent)
    full_area: int = 0  # pixels of the whole shape before occlusion
    style: tuple[str, ...] = ()  # v2 drawing-style tags ("outline", "hand-drawn", "striped", ...); v1: none
    image_size: int = IMAGE_SIZE  # side of the (square) image the object is in
    angle: float = 0.0  # rotation, radians (v2; v1 objects are upright within ±0.2, not recorded)

    @property
    def label(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    def position(self) -> str | None:
        """A coarse position word, or None when the object is not clearly in one region."""
        x, y = self.center[0] / self.image_size, self.center[1] / self.image_size
        if 0.38 <= x <= 0.62 and 0.38 <= y <= 0.62:
            return "center"
        horizontal = "left" if x < 0.36 else "right" if x > 0.64 else None
        vertical = "top" if y < 0.36 else "bottom" if y > 0.64 else None
        if horizontal and not vertical:
            return horizontal
        if vertical and not horizontal:
            return vertical
        return None


@dataclass
class Scene:
    image: np.ndarray  # uint8 [H, W, 3]
    objects: list[ToyObject]

    def semantic_mask(self) -> np.ndarray:
        """uint8 [H, W]: 0 background, 1 + SHAPES.index(shape) where an object is visible."""
        out = np.zeros(self.image.shape[:2], dtype=np.uint8)
        for obj in self.objects:
            out[obj.mask] = 1 + SHAPES.index(obj.shape)
        return out

    def colour_mask(self) -> np.ndarray:
        """uint8 [H, W]: 0 background, 1 + COLOURS index of the object visible there."""
        out = np.zeros(self.image.shape[:2], dtype=np.uint8)
        colours = list(COLOURS)
        for obj in self.objects:
            out[obj.mask] = 1 + colours.index(obj.colour)
        return out

    def instance_mask(self) -> np.ndarray:
        """uint8 [H, W]: 0 background, i + 1 for the i-th object's visible pixels."""
        out = np.zeros(self.image.shape[:2], dtype=np.uint8)
        for i, obj in enumerate(self.objects):
            out[obj.mask] = i + 1
        return out


def _polygon(shape: str) -> list[tuple[float, float]]:
    if shape == "square":
        return [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)]
    if shape == "diamond":
        return [(0.0, -1.0), (0.85, 0.0), (0.0, 1.0), (-0.85, 0.0)]
    if shape == "triangle":
        return [(0.0, -1.0), (0.97, 0.8), (-0.97, 0.8)]
    if shape == "star":
        pts = []
        for k in range(10):
            r = 1.0 if k % 2 == 0 else 0.42
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((r * math.cos(a), r * math.sin(a)))
        return pts
    if shape == "cross":
        w = 0.34
        return [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w),
                (-1, w), (-1, -w), (-w, -w)]
    raise ValueError(f"no polygon for shape {shape!r}")


def shape_mask(shape: str, center: tuple[float, float], diameter: float, angle: float,
               image_size: int = IMAGE_SIZE) -> np.ndarray:
    """Binary (not anti-aliased) mask of one full shape."""
    canvas = Image.new("L", (image_size, image_size), 0)
    draw = ImageDraw.Draw(canvas)
    cx, cy = center
    r = diameter / 2
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    else:
        c, s = math.cos(angle), math.sin(angle)
        pts = [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in _polygon(shape)]
        draw.polygon(pts, fill=1)
    return np.asarray(canvas, dtype=bool)


def _upsample(low: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(low.astype(np.float32)).resize((size, size), Image.Resampling.BILINEAR))


def background(rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """Low-saturation blotches at two scales plus pixel noise (float32 [H, W, 3] in 0..255)."""
    img = np.full((size, size, 3), rng.uniform(70, 190), dtype=np.float32) + rng.normal(0, 10, size=3)
    for cells, amp in ((4, 35.0), (12, 18.0)):
        luminance = _upsample(rng.normal(0, amp, size=(cells, cells)), size)
        img += luminance[..., None]
        for c in range(3):  # a little chroma so backgrounds are not pure grey
            img[..., c] += _upsample(rng.normal(0, amp / 6, size=(cells, cells)), size)
    img += rng.normal(0, 7, size=img.shape)
    return img


def pick_attributes(rng: np.random.Generator, first: bool, shape: str | None, colour: str | None,
                    sizes: Mapping[str, object]) -> tuple[str, str, str]:
    """Shape, colour and size word of a new object; ``shape``/``colour`` are forced on the first one."""
    shp = shape if (first and shape) else str(rng.choice(SHAPES))
    col = colour if (first and colour) else str(rng.choice(list(COLOURS)))
    return shp, col, str(rng.choice(list(sizes)))


def render_scene(rng: np.random.Generator, n_objects: int | None = None, image_size: int = IMAGE_SIZE,
                 shape: str | None = None, colour: str | None = None) -> Scene:
    """Draw one scene. ``shape``/``colour`` force the first object's attributes (for tests)."""
    if n_objects is None:
        n_objects = int(rng.choice([1, 2, 3], p=[0.5, 0.33, 0.17]))
    img = background(rng, image_size)
    placed: list[tuple[str, str, str, tuple[float, float], np.ndarray]] = []
    occupied = np.zeros((image_size, image_size), dtype=np.int16) - 1  # index of the top object
    for i in range(n_objects):
        for _attempt in range(20):
            shp, col, size = pick_attributes(rng, i == 0, shape, colour, SIZES)
            lo, hi = SIZES[size]
            diameter = float(rng.uniform(lo, hi))
            r = diameter / 2
            center = (float(rng.uniform(r, image_size - r)), float(rng.uniform(r, image_size - r)))
            angle = float(rng.uniform(-0.2, 0.2))
            full = shape_mask(shp, center, diameter, angle, image_size)
            trial = occupied.copy()
            trial[full] = i
            # every object, earlier ones included, must stay mostly visible
            ok = all((trial == j).sum() >= MIN_VISIBLE_FRACTION * m.sum()
                     for j, (*_, m) in enumerate([*placed, (shp, col, size, center, full)]))
            if ok:
                placed.append((shp, col, size, center, full))
                occupied = trial
                break
    for i, (_shp, col, _size, _center, _full) in enumerate(placed):
        visible = occupied == i
        rgb = np.asarray(COLOURS[col], dtype=np.float32) + rng.normal(0, 12, size=3)
        shade = 1.0 + rng.normal(0, 0.06, size=(image_size, image_size, 1))
        img[visible] = (rgb * shade[visible]) + rng.normal(0, 6, size=(int(visible.sum()), 3))
    objects = []
    for i, (shp, col, size, center, full) in enumerate(placed):
        visible = occupied == i
        ys, xs = np.nonzero(visible)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        objects.append(ToyObject(shp, col, size, center, visible, box, int(full.sum()), image_size=image_size))
    return Scene(np.clip(img, 0, 255).astype(np.uint8), objects)
