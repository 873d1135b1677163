"""Evaluation data sources: an ImageFolder tree, a CSV, or the toy world (``toyworld:SPLIT/TASK``)."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlserve.errors import InvalidInput

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
TOY_TEMPLATES = {"shape": ["a photo of a {}."], "colour": ["a photo of a {} object."], "novel": ["a photo of a {}."],
                 "rotated": ["a photo of a {}."]}


@dataclass
class LabelledImages:
    """Images (bytes or arrays), their labels and the class list, with default prompt templates."""

    images: list[Any]
    labels: list[str]
    classes: list[str]
    names: list[str]
    templates: list[str] = field(default_factory=lambda: ["a photo of a {}."])


@dataclass
class CaptionedImages:
    images: list[Any]
    names: list[str]
    captions: list[str]
    caption_image: list[int]  # caption i describes image caption_image[i]
    scenes: list[Any] | None = None  # toy world: each image's scene, for attribute queries


def _parse_toy(source: str) -> tuple[str, str, str]:
    """``toyworld:[WORLD:]SPLIT[/TASK]`` -> (world, split, task); the world defaults to the current one."""
    from vlserve.toyworld.dataset import CURRENT_WORLD

    body = source.removeprefix("toyworld:")
    world, sep, rest = body.partition(":")
    if not sep:
        world, rest = CURRENT_WORLD, body
    split, _, task = rest.partition("/")
    return world, split or "test", task


def load_labelled(source: str, n: int = 1000) -> LabelledImages:
    if source.startswith("toyworld:"):
        from vlserve.toyworld.dataset import labelled_set

        world, split, task = _parse_toy(source)
        images, labels, classes = labelled_set(split, task or "shape", n, world=world)
        return LabelledImages(images, labels, classes, [f"{world}:{split}:{i}" for i in range(len(images))],
                              TOY_TEMPLATES[task or "shape"])
    path = Path(source)
    if path.is_dir():
        classes = sorted(d.name for d in path.iterdir() if d.is_dir())
        pairs = [(f, c) for c in classes for f in sorted((path / c).rglob("*"))
                 if f.suffix.lower() in IMAGE_SUFFIXES]
        if not pairs:
            raise InvalidInput(f"{path}: no images in class sub-folders (expected DIR/CLASS/IMAGE)")
        return LabelledImages([f.read_bytes() for f, _ in pairs], [c for _, c in pairs], classes,
                              [str(f) for f, _ in pairs])
    if path.suffix.lower() == ".csv" and path.is_file():
        rows = _read_csv(path, ("image", "label"))
        classes = sorted({r["label"] for r in rows})
        files = [_resolve(path, r["image"]) for r in rows]
        return LabelledImages([f.read_bytes() for f in files], [r["label"] for r in rows], classes,
                              [str(f) for f in files])
    raise InvalidInput(f"data source {source!r}: not a folder, a CSV of image,label, or toyworld:SPLIT/TASK")


def load_captioned(source: str, n: int = 1000) -> CaptionedImages:
    if source.startswith("toyworld:"):
        from vlserve.toyworld.dataset import sample

        world, split, _ = _parse_toy(source)
        samples = [sample(split, i, n_captions=3, world=world) for i in range(n)]
        captions = [c for s in samples for c, _ in s.captions]
        owners = [i for i, s in enumerate(samples) for _ in s.captions]
        return CaptionedImages([s.scene.image for s in samples], [f"{world}:{split}:{i}" for i in range(n)], captions,
                               owners, scenes=[s.scene for s in samples])
    path = Path(source)
    if not (path.suffix.lower() == ".csv" and path.is_file()):
        raise InvalidInput(f"data source {source!r}: expected a CSV with image,caption columns or toyworld:SPLIT")
    rows = _read_csv(path, ("image", "caption"))
    index: dict[str, int] = {}
    for r in rows:
        index.setdefault(r["image"], len(index))
    files = [_resolve(path, name) for name in index]
    return CaptionedImages([f.read_bytes() for f in files], [str(f) for f in files], [r["caption"] for r in rows],
                           [index[r["image"]] for r in rows])


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise InvalidInput(f"{path}: missing column(s) {', '.join(missing)}; has {reader.fieldnames}")
        rows = list(reader)
    if not rows:
        raise InvalidInput(f"{path}: no rows")
    return rows


def _resolve(csv_path: Path, name: str) -> Path:
    p = Path(name)
    p = p if p.is_absolute() else csv_path.parent / p
    if not p.is_file():
        raise InvalidInput(f"{csv_path}: image file not found: {name}")
    return p


