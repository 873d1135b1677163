"""Named, non-overlapping splits of the toy world, and the labelled sets used for evaluation.

Two worlds: ``v2`` (the current one: shapes at any rotation in many drawing styles, see
:mod:`vlserve.toyworld.scene_v2`) and ``v1`` (the original upright, flat-filled world, kept so
models can be scored on it). v2 has two extra evaluation-only splits drawn by a separately written
rasteriser (:mod:`vlserve.toyworld.heldout`): ``heldout`` (flat and outline shapes) and
``heldout-dashed`` (dashed outlines, a technique absent from training).

Sample ``i`` of split ``s`` is drawn from ``SeedSequence([seed, SPLIT_IDS[s], stream, i])`` in v1
and ``SeedSequence([seed, 2, SPLIT_IDS[s], stream, i])`` in v2: the streams of different splits
are disjoint by construction, so no image is in two splits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlserve.errors import InvalidInput
from vlserve.toyworld.captions import CaptionSpec, caption
from vlserve.toyworld.heldout import render_heldout
from vlserve.toyworld.novel import NOVEL_CLASSES, RESERVED_NAMES
from vlserve.toyworld.scene import COLOURS, SHAPES, Scene, render_scene
from vlserve.toyworld.scene_v2 import render_scene_v2

SPLIT_IDS = {"train": 0, "val": 1, "test": 2, "heldout": 3, "heldout-dashed": 4}
WORLD_SPLITS = {"v1": ("train", "val", "test"), "v2": tuple(SPLIT_IDS)}
WORLDS = tuple(WORLD_SPLITS)
CURRENT_WORLD = "v2"
TASKS = ("shape", "colour", "novel", "rotated")
DEFAULT_SEED = 20261125
_SCENES, _SINGLE, _NOVEL, _ROTATED, _DETECT, _COMPOSED = 0, 1, 2, 3, 4, 5  # streams inside a split


@dataclass
class ToySample:
    scene: Scene
    captions: list[tuple[str, CaptionSpec]]


def _check(split: str, world: str) -> None:
    if world not in WORLD_SPLITS:
        raise InvalidInput(f"unknown toy world {world!r}; known: {', '.join(WORLDS)}")
    if split not in WORLD_SPLITS[world]:
        raise InvalidInput(f"unknown toy-world split {split!r} in world {world}; "
                           f"known: {', '.join(WORLD_SPLITS[world])}")


def _rng(split: str, stream: int, index: int, seed: int, world: str = CURRENT_WORLD) -> np.random.Generator:
    _check(split, world)
    key = [seed, SPLIT_IDS[split], stream, index] if world == "v1" else [seed, 2, SPLIT_IDS[split], stream, index]
    return np.random.default_rng(np.random.SeedSequence(key))


def _render(split: str, world: str, rng: np.random.Generator, **force: object) -> Scene:
    if world == "v1":
        return render_scene(rng, **force)  # type: ignore[arg-type]
    if split.startswith("heldout"):
        force.pop("angle", None)
        return render_heldout(rng, style="dashed" if split == "heldout-dashed" else None, **force)  # type: ignore[arg-type]
    return render_scene_v2(rng, **force)  # type: ignore[arg-type]


def sample(split: str, index: int, n_captions: int = 1, seed: int = DEFAULT_SEED,
           world: str = CURRENT_WORLD, easy: float = 0.0) -> ToySample:
    """Scene ``index`` of ``split`` with ``n_captions`` captions (``easy``: v2 training curriculum, the
    probability of a v1-like scene; see :func:`~vlserve.toyworld.scene_v2.render_scene_v2`)."""
    rng = _rng(split, _SCENES, index, seed, world)
    scene = _render(split, world, rng, **({"easy": easy} if easy else {}))
    caps = [caption(rng, scene.objects, RESERVED_NAMES) for _ in range(n_captions)]
    return ToySample(scene, caps)


def single_object(split: str, index: int, seed: int = DEFAULT_SEED, world: str = CURRENT_WORLD) -> Scene:
    """A one-object scene (the zero-shot shape/colour evaluation set)."""
    return _render(split, world, _rng(split, _SINGLE, index, seed, world), n_objects=1)


def detection_scene(split: str, index: int, seed: int = DEFAULT_SEED, min_objects: int = 1,
                    max_objects: int = 4) -> Scene:
    """A v2 scene of ``min_objects``..``max_objects`` objects, possibly overlapping (each at least
    partly visible; boxes and masks are the visible pixels): the detection and pixel-text set."""
    rng = _rng(split, _DETECT, index, seed)
    n = int(rng.integers(min_objects, max_objects + 1))
    return _render(split, CURRENT_WORLD, rng, n_objects=n)


def composed_scene(objects: list[tuple[str, str]], index: int = 0, image_size: int = 160,
                   seed: int = DEFAULT_SEED) -> Scene:
    """A test-split v2 scene holding exactly ``objects`` ((shape, colour) pairs), e.g. a red star and a
    blue circle, drawn in random styles (``index`` picks another drawing)."""
    for shape, colour in objects:
        if shape not in SHAPES or colour not in COLOURS:
            raise InvalidInput(f"unknown toy object {colour} {shape}; shapes: {', '.join(SHAPES)}; "
                               f"colours: {', '.join(COLOURS)}")
    return render_scene_v2(_rng("test", _COMPOSED, index, seed), image_size=image_size, forced=objects)


def rotated_object(split: str, index: int, n: int, seed: int = DEFAULT_SEED) -> Scene:
    """A one-object v2 scene whose shape is turned by ``360 * index / n`` degrees (all angles, evenly)."""
    angle = 2 * np.pi * index / max(1, n)
    return _render(split, CURRENT_WORLD, _rng(split, _ROTATED, index, seed), n_objects=1, angle=angle)


def novel_object(split: str, index: int, seed: int = DEFAULT_SEED, world: str = CURRENT_WORLD) -> tuple[Scene, str]:
    """A one-object scene of novel class ``index % 12`` (class-balanced), and the class name."""
    names = list(NOVEL_CLASSES)
    name = names[index % len(names)]
    colour, shape = NOVEL_CLASSES[name]
    rng = _rng(split, _NOVEL, index, seed, world)
    return _render(split, world, rng, n_objects=1, shape=shape, colour=colour), name


def labelled_set(split: str, task: str, n: int, seed: int = DEFAULT_SEED,
                 world: str = CURRENT_WORLD) -> tuple[list[np.ndarray], list[str], list[str]]:
    """Images, labels and the class list for a zero-shot task: ``shape``, ``colour``, ``novel`` or
    ``rotated`` (shapes turned through all angles evenly; v2 only)."""
    _check(split, world)
    if task == "novel":
        pairs = [novel_object(split, i, seed, world) for i in range(n)]
        return [s.image for s, _ in pairs], [name for _, name in pairs], list(NOVEL_CLASSES)
    if task == "rotated":
        if world != "v2":
            raise InvalidInput("the rotated task exists in toy world v2 only")
        scenes = [rotated_object(split, i, n, seed) for i in range(n)]
        return [s.image for s in scenes], [s.objects[0].shape for s in scenes], list(SHAPES)
    if task not in TASKS:
        raise InvalidInput(f"unknown toy-world task {task!r}; known: {', '.join(TASKS)}")
    scenes = [single_object(split, i, seed, world) for i in range(n)]
    if task == "shape":
        return [s.image for s in scenes], [s.objects[0].shape for s in scenes], list(SHAPES)
    return [s.image for s in scenes], [s.objects[0].colour for s in scenes], list(COLOURS)
