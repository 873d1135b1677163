"""Classification by description (Menon & Vondrick 2022, "Visual Classification via Description
from Large Language Models").

A descriptor file maps each class to short descriptors, in the format of the paper's release:
``{"tiger": ["stripes", "has claws", "a large cat"]}``. Each descriptor becomes one prompt with
the release's rule (``make_descriptor_sentence``): descriptors starting with ``a``/``an`` read
"which is ...", those starting with ``has``/``often``/``typically``/``may``/``can`` read "which ...",
``used`` reads "which is ...", anything else "which has ...". The prompt is
``{label_before}{class}{between}{sentence}{after}`` with the release's defaults ``""``, ``", "``,
``""`` — e.g. "tiger, which has stripes".

The class score is the **mean of the descriptor cosine similarities** (the paper's rule), not the
similarity to a re-normalised mean embedding (the template-ensemble rule).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from vlserve.errors import InvalidInput


def make_descriptor_sentence(descriptor: str) -> str:
    """The release's rule, kept verbatim (including its ``startswith('a')`` quirk)."""
    if descriptor.startswith("a") or descriptor.startswith("an"):
        return f"which is {descriptor}"
    if descriptor.startswith(("has", "often", "typically", "may", "can")):
        return f"which {descriptor}"
    if descriptor.startswith("used"):
        return f"which is {descriptor}"
    return f"which has {descriptor}"


def descriptor_prompt(classname: str, descriptor: str, label_before: str = "", between: str = ", ",
                      after: str = "") -> str:
    return f"{label_before}{classname.replace('_', ' ')}{between}{make_descriptor_sentence(descriptor)}{after}"


def validate_descriptors(obj: Any, source: str = "descriptors") -> dict[str, list[str]]:
    """Check ``obj`` is ``{str: [str, ...]}`` with no empty class or descriptor list."""
    if not isinstance(obj, dict):
        raise InvalidInput(f"{source}: expected a JSON object {{class: [descriptor, ...]}}, got {type(obj).__name__}")
    if not obj:
        raise InvalidInput(f"{source}: no classes")
    out: dict[str, list[str]] = {}
    for cls, descs in obj.items():
        if not isinstance(cls, str) or not cls.strip():
            raise InvalidInput(f"{source}: class names must be non-empty strings, got {cls!r}")
        if not isinstance(descs, list) or not descs:
            raise InvalidInput(f"{source}: class {cls!r} must map to a non-empty list of strings, got {descs!r}")
        bad = [d for d in descs if not isinstance(d, str) or not d.strip()]
        if bad:
            raise InvalidInput(f"{source}: class {cls!r} has descriptors that are not non-empty strings: {bad[:3]!r}")
        out[cls] = [d.strip() for d in descs]
    return out


def load_descriptor_file(path: Path | str) -> dict[str, list[str]]:
    p = Path(path)
    if not p.is_file():
        raise InvalidInput(f"descriptor file not found: {p}")
    try:
        obj = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidInput(f"{p}: not valid JSON ({e})") from None
    return validate_descriptors(obj, str(p))


def waffle_descriptors(classes: list[str], count: int = 15, seed: int = 0) -> dict[str, list[str]]:
    """WaffleCLIP's baseline (Roth et al. 2023): descriptors made of random words and random
    character sequences, the same for every class, so only the class name carries information."""
    rng = np.random.default_rng(seed)
    letters = list("abcdefghijklmnopqrstuvwxyz")
    words = ["".join(rng.choice(letters, size=int(rng.integers(3, 9)))) for _ in range(count)]
    chars = ["".join(rng.choice(letters, size=int(rng.integers(3, 9)))) + " " +
             "".join(rng.choice(letters, size=int(rng.integers(3, 9)))) for _ in range(count)]
    pool = [w for pair in zip(words, chars, strict=True) for w in pair][:count]
    return {c: list(pool) for c in classes}
