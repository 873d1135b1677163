"""Caption grammar for toy scenes, with machine-checkable meaning.

Every caption comes with a :class:`CaptionSpec` saying what an image must contain for the caption
to be true. Training uses it for soft contrastive targets (a caption is a positive for every image
in the batch it describes, not only its own), evaluation uses it to score retrieval hits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vlserve.toyworld.scene import COLOURS, SHAPES, SIZES, ToyObject

NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}
FRAMES = ("a {}", "a photo of a {}", "an image of a {}", "there is a {}", "a picture showing a {}",
          "a rendering of a {}", "{}")
ONSET = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "gl", "tr", "sk", "pl")
NUCLEUS = ("a", "e", "i", "o", "u", "ei", "ou")
CODA = ("", "", "n", "r", "k", "x", "sh", "m")


@dataclass(frozen=True)
class ObjSpec:
    shape: str | None = None
    colour: str | None = None
    size: str | None = None
    position: str | None = None
    style: str | None = None  # one of the object's style tags (v2)

    def matches(self, obj: ToyObject) -> bool:
        return ((self.shape is None or obj.shape == self.shape)
                and (self.colour is None or obj.colour == self.colour)
                and (self.size is None or obj.size == self.size)
                and (self.position is None or obj.position() == self.position)
                and (self.style is None or self.style in obj.style))


@dataclass(frozen=True)
class CaptionSpec:
    """Image satisfies the caption when each ``(spec, n, exact)`` holds and the total count fits."""

    requirements: tuple[tuple[ObjSpec, int, bool], ...] = field(default_factory=tuple)
    total: int | None = None

    def satisfied_by(self, objects: Sequence[ToyObject]) -> bool:
        if self.total is not None and len(objects) != self.total:
            return False
        for spec, n, exact in self.requirements:
            k = sum(spec.matches(o) for o in objects)
            if (exact and k != n) or (not exact and k < n):
                return False
        return True


def made_up_name(rng: np.random.Generator, reserved: frozenset[str] = frozenset()) -> str:
    """A pronounceable nonsense word (never one of ``reserved``)."""
    while True:
        n = int(rng.integers(2, 4))
        word = "".join(str(rng.choice(ONSET)) + str(rng.choice(NUCLEUS)) for _ in range(n)) + str(rng.choice(CODA))
        if word not in reserved:
            return word


def _object_phrase(rng: np.random.Generator, obj: ToyObject) -> tuple[str, ObjSpec]:
    """Describe one object with a random subset of its attributes."""
    kind = rng.choice(["shape", "colour_shape", "colour_shape", "size_colour_shape", "colour", "size_shape"])
    if kind == "shape":
        spec = ObjSpec(shape=obj.shape)
        text = obj.shape
    elif kind == "colour_shape":
        spec = ObjSpec(shape=obj.shape, colour=obj.colour)
        text = f"{obj.colour} {obj.shape}"
    elif kind == "size_colour_shape":
        spec = ObjSpec(shape=obj.shape, colour=obj.colour, size=obj.size)
        text = f"{obj.size} {obj.colour} {obj.shape}"
    elif kind == "size_shape":
        spec = ObjSpec(shape=obj.shape, size=obj.size)
        text = f"{obj.size} {obj.shape}"
    else:
        spec = ObjSpec(colour=obj.colour)
        text = f"{obj.colour} {rng.choice(['object', 'thing', 'shape'])}"
    if obj.style and spec.shape is not None and rng.random() < 0.4:
        text, spec = _with_style(rng, obj, text, spec)
    pos = obj.position()
    if pos is not None and rng.random() < 0.25:
        spec = ObjSpec(spec.shape, spec.colour, spec.size, pos, spec.style)
        text += " in the center" if pos == "center" else f" at the {pos}" if pos in ("top", "bottom") \
            else f" on the {pos}"
    return text, spec


STYLE_ADJECTIVES = {"filled": ("solid", "filled"), "outline": ("outlined",), "hand-drawn": ("hand-drawn", "sketched"),
                    "shaded": ("shaded",), "striped": ("striped",), "dotted": ("dotted",),
                    "checkered": ("checkered",), "textured": ("textured",)}


def _with_style(rng: np.random.Generator, obj: ToyObject, text: str, spec: ObjSpec) -> tuple[str, ObjSpec]:
    """Add one of the object's drawing-style tags: "a red triangle outline", "a hand-drawn blue star"."""
    tags = [t for t in obj.style if t in STYLE_ADJECTIVES]
    if not tags:
        return text, spec
    tag = str(rng.choice(tags))
    if tag == "outline" and rng.random() < 0.6:
        text = f"{text} outline"
    elif tag == "hand-drawn" and rng.random() < 0.3:
        text = f"sketch of a {text}"
    else:
        text = f"{rng.choice(STYLE_ADJECTIVES[tag])} {text}"
    return text, ObjSpec(spec.shape, spec.colour, spec.size, spec.position, tag)


def which_caption(rng: np.random.Generator, name: str, obj: ToyObject) -> tuple[str, CaptionSpec]:
    """Menon & Vondrick-style phrasing around a made-up name: "neri, which is a red star."."""
    kind = rng.choice(["is_shape", "has_colour", "is_both", "has_size"])
    if kind == "is_shape":
        return f"{name}, which is a {obj.shape}.", CaptionSpec(((ObjSpec(shape=obj.shape), 1, False),))
    if kind == "has_colour":
        return f"{name}, which has {obj.colour} color.", CaptionSpec(((ObjSpec(colour=obj.colour), 1, False),))
    if kind == "has_size":
        spec = ObjSpec(shape=obj.shape, size=obj.size)
        return f"{name}, which is a {obj.size} {obj.shape}.", CaptionSpec(((spec, 1, False),))
    spec = ObjSpec(shape=obj.shape, colour=obj.colour)
    return f"{name}, which is a {obj.colour} {obj.shape}.", CaptionSpec(((spec, 1, False),))


def _plural(shape: str) -> str:
    return shape + ("es" if shape.endswith("s") else "s")


def caption(rng: np.random.Generator, objects: Sequence[ToyObject],
            reserved_names: frozenset[str] = frozenset()) -> tuple[str, CaptionSpec]:
    """One random caption of a scene, and its meaning (half of the plain captions end with a full stop)."""
    text, spec = _caption(rng, objects, reserved_names)
    if not text.endswith(".") and rng.random() < 0.5:
        text += "."
    return text, spec


def _caption(rng: np.random.Generator, objects: Sequence[ToyObject],
             reserved_names: frozenset[str]) -> tuple[str, CaptionSpec]:
    r = rng.random()
    obj = objects[int(rng.integers(len(objects)))]
    if r < 0.30:  # a single object, some attributes
        text, spec = _object_phrase(rng, obj)
        article = "an" if text[0] in "aeiou" else "a"
        frame = str(rng.choice(FRAMES)).replace("a {}", f"{article} {{}}")
        return frame.format(text), CaptionSpec(((spec, 1, False),))
    if r < 0.50:  # made-up name, "which is/has" phrasing
        return which_caption(rng, made_up_name(rng, reserved_names), obj)
    if r < 0.70:  # every object listed
        parts, reqs = [], []
        for o in objects:
            text, spec = _object_phrase(rng, o)
            parts.append(("an " if text[0] in "aeiou" else "a ") + text)
            reqs.append((spec, 1, False))
        text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        return text, CaptionSpec(tuple(reqs), total=len(objects))
    if r < 0.85:  # counts of a shape or a colour
        if rng.random() < 0.5:
            n = sum(o.shape == obj.shape for o in objects)
            noun = obj.shape if n == 1 else _plural(obj.shape)
            spec = ObjSpec(shape=obj.shape)
        else:
            n = sum(o.colour == obj.colour for o in objects)
            noun = f"{obj.colour} object" + ("s" if n > 1 else "")
            spec = ObjSpec(colour=obj.colour)
        word = "exactly one" if n == 1 else NUMBER_WORDS[n]
        return f"{word} {noun}", CaptionSpec(((spec, n, True),))
    # total count
    n = len(objects)
    text = ("a single object" if n == 1 else f"{NUMBER_WORDS[n]} objects") if rng.random() < 0.5 \
        else ("one shape" if n == 1 else f"{NUMBER_WORDS[n]} shapes")
    return text, CaptionSpec((), total=n)


def query_spec(colour: str | None = None, shape: str | None = None) -> CaptionSpec:
    """The meaning of a retrieval query such as "a red star"."""
    return CaptionSpec(((ObjSpec(shape=shape, colour=colour), 1, False),))


__all__ = ["COLOURS", "SHAPES", "SIZES", "CaptionSpec", "ObjSpec", "caption", "made_up_name", "query_spec",
           "which_caption"]
