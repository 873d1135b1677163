"""Contact sheets: a grid of examples for each drawing style of the toy world (for the docs)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw

from vlserve.toyworld.dataset import single_object
from vlserve.toyworld.scene import Scene

TILE = 96


def style_key(scene: Scene) -> str:
    """The style family of a one-object scene: technique plus fill, e.g. ``filled-striped``."""
    return object_style(scene.objects[0].style)


def object_style(tags: tuple[str, ...]) -> str:
    """The style family of one object's style tags, e.g. ``filled-striped`` or ``hand-drawn-outline``."""
    if "dashed" in tags:
        return "heldout-dashed"
    if "hand-drawn" in tags:
        return "hand-drawn-outline" if "outline" in tags else "hand-drawn-filled"
    if "outline" in tags:
        return "outline"
    fill = next((t for t in tags if t != "filled"), "flat")
    return f"filled-{fill}"


def collect(split: str, per_style: int, limit: int = 4000) -> dict[str, list[Scene]]:
    """One-object scenes of ``split`` grouped by style family, ``per_style`` of each (first found)."""
    groups: dict[str, list[Scene]] = {}
    for i in range(limit):
        scene = single_object(split, i)
        group = groups.setdefault(style_key(scene), [])
        if len(group) < per_style:
            group.append(scene)
        if len(groups) >= 9 and all(len(g) >= per_style for g in groups.values()):
            break
    return groups


def sheet(scenes: list[Scene], columns: int = 8, label: Callable[[Scene], str] | None = None) -> Image.Image:
    """A grid of scenes, each resized to one tile, captioned with its colour and shape."""
    rows = (len(scenes) + columns - 1) // columns
    out = Image.new("RGB", (columns * TILE, rows * (TILE + 14)), "white")
    draw = ImageDraw.Draw(out)
    for k, scene in enumerate(scenes):
        x, y = (k % columns) * TILE, (k // columns) * (TILE + 14)
        out.paste(Image.fromarray(scene.image).resize((TILE, TILE), Image.Resampling.BICUBIC), (x, y))
        text = label(scene) if label else f"{scene.objects[0].colour} {scene.objects[0].shape}"
        draw.text((x + 3, y + TILE + 1), text, fill=(0, 0, 0))
    return out


def write_sheets(out: Path, per_style: int = 16) -> dict[str, str]:
    """One JPEG per style family of the test split and of the held-out splits; returns {style: file}."""
    out.mkdir(parents=True, exist_ok=True)
    groups = collect("test", per_style)
    for name, scenes in collect("heldout", per_style, limit=200).items():
        groups["heldout-" + ("flat" if name == "filled-flat" else name)] = scenes
    written = {}
    for name, scenes in sorted(groups.items()):
        if not scenes:
            continue
        path = out / f"toyworld_{name}.jpg"
        sheet(scenes).save(path, quality=88)
        written[name] = str(path)
    dashed = [single_object("heldout-dashed", i) for i in range(per_style)]
    sheet(dashed).save(out / "toyworld_heldout-dashed.jpg", quality=88)
    written["heldout-dashed"] = str(out / "toyworld_heldout-dashed.jpg")
    return written


__all__ = ["collect", "sheet", "style_key", "write_sheets"]
