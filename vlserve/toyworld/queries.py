"""Attribute queries for toy-world retrieval: every colour-shape pair, every shape, every colour."""

from __future__ import annotations

from vlserve.toyworld.captions import CaptionSpec, query_spec
from vlserve.toyworld.scene import COLOURS, SHAPES

COLOUR_SHAPES = [f"{c} {s}" for c in COLOURS for s in SHAPES]  # every colour-shape pair, colour-major


def attribute_queries() -> tuple[list[str], list[CaptionSpec]]:
    texts, specs = [], []
    for colour in COLOURS:
        for shape in SHAPES:
            texts.append(f"a {colour} {shape}")
            specs.append(query_spec(colour=colour, shape=shape))
    for shape in SHAPES:
        texts.append(f"a {shape}")
        specs.append(query_spec(shape=shape))
    for colour in COLOURS:
        texts.append(f"a {colour} object")
        specs.append(query_spec(colour=colour))
    return texts, specs
