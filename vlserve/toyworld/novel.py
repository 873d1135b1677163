"""Novel classes: made-up names, never seen in training text, each defined by attributes.

They exist to test classification by description (Menon & Vondrick 2022): the name alone carries
no information, so only descriptors ("which has red color", "which is a star") can identify them.
"""

from __future__ import annotations

NOVEL_CLASSES: dict[str, tuple[str, str]] = {
    "blicket": ("red", "star"), "dax": ("blue", "circle"), "wug": ("green", "triangle"),
    "toma": ("yellow", "square"), "fep": ("purple", "cross"), "zorb": ("orange", "diamond"),
    "kiki": ("blue", "star"), "bouba": ("red", "circle"), "gazzer": ("yellow", "triangle"),
    "tufa": ("green", "square"), "modi": ("orange", "cross"), "jebble": ("purple", "diamond"),
}
RESERVED_NAMES = frozenset(NOVEL_CLASSES)


def novel_descriptors() -> dict[str, list[str]]:
    """Descriptors in the format of Menon & Vondrick's release: ``{"classname": ["descriptor", ...]}``."""
    return {name: [f"{colour} color", f"a {shape}"] for name, (colour, shape) in NOVEL_CLASSES.items()}
