"""Named, non-overlapping splits of the toy world, and the labelled sets used for evaluation.

Sample ``i`` of split ``s`` is drawn from ``SeedSequence([seed, SPLIT_IDS[s], stream, i])``: the
streams of different splits are disjoint by construction, so no image is in two splits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlserve.errors import InvalidInput
from vlserve.toyworld.captions import CaptionSpec, caption
from vlserve.toyworld.novel import NOVEL_CLASSES, RESERVED_NAMES
from vlserve.toyworld.scene import COLOURS, SHAPES, Scene, render_scene

SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
DEFAULT_SEED = 20261125
_SCENES, _SINGLE, _NOVEL = 0, 1, 2  # streams inside a split


@dataclass
class ToySample:
    scene: Scene
    captions: list[tuple[str, CaptionSpec]]


def _rng(split: str, stream: int, index: int, seed: int) -> np.random.Generator:
    if split not in SPLIT_IDS:
        raise InvalidInput(f"unknown toy-world split {split!r}; known: {', '.join(SPLIT_IDS)}")
    return np.random.default_rng(np.random.SeedSequence([seed, SPLIT_IDS[split], stream, index]))


def sample(split: str, index: int, n_captions: int = 1, seed: int = DEFAULT_SEED) -> ToySample:
    """Scene ``index`` of ``split`` with ``n_captions`` captions."""
    rng = _rng(split, _SCENES, index, seed)
    scene = render_scene(rng)
    caps = [caption(rng, scene.objects, RESERVED_NAMES) for _ in range(n_captions)]
    return ToySample(scene, caps)


def single_object(split: str, index: int, seed: int = DEFAULT_SEED) -> Scene:
    """A one-object scene (the zero-shot shape/colour evaluation set)."""
    return render_scene(_rng(split, _SINGLE, index, seed), n_objects=1)


def novel_object(split: str, index: int, seed: int = DEFAULT_SEED) -> tuple[Scene, str]:
    """A one-object scene of novel class ``index % 12`` (class-balanced), and the class name."""
    names = list(NOVEL_CLASSES)
    name = names[index % len(names)]
    colour, shape = NOVEL_CLASSES[name]
    return render_scene(_rng(split, _NOVEL, index, seed), n_objects=1, shape=shape, colour=colour), name


def labelled_set(split: str, task: str, n: int, seed: int = DEFAULT_SEED) -> tuple[list[np.ndarray], list[str],
                                                                                    list[str]]:
    """Images, labels and the class list for a zero-shot task: ``shape``, ``colour`` or ``novel``."""
    if task == "novel":
        pairs = [novel_object(split, i, seed) for i in range(n)]
        return [s.image for s, _ in pairs], [name for _, name in pairs], list(NOVEL_CLASSES)
    scenes = [single_object(split, i, seed) for i in range(n)]
    if task == "shape":
        return [s.image for s in scenes], [s.objects[0].shape for s in scenes], list(SHAPES)
    if task == "colour":
        return [s.image for s in scenes], [s.objects[0].colour for s in scenes], list(COLOURS)
    raise InvalidInput(f"unknown toy-world task {task!r}; known: shape, colour, novel")
