"""Example inputs drawn from the toy world (deterministic), written once to a cache folder so every tab
works on first start with the embedded models."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from vlserve.toyworld.dataset import COLOURS, SHAPES, composed_scene

EVAL_PER_CLASS = 6


def _save(path: Path, objects: list[tuple[str, str]], index: int, size: int) -> str:
    """The example at ``path``, drawn (deterministically) only if it is not there yet."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(composed_scene(objects, index=index, image_size=size).image).save(path)
    return str(path)


def toy_examples(root: Path) -> dict[str, list[str] | str]:
    """Paths of example images under ``root``: single shapes, two-object scenes, and a labelled folder
    (``eval/SHAPE/*.png``) for the Evaluate tab."""
    root.mkdir(parents=True, exist_ok=True)
    singles = [_save(root / f"{colour}-{shape}.png", [(shape, colour)], 3, 160)
               for shape, colour in [("triangle", "blue"), ("star", "red"), ("circle", "green"),
                                     ("cross", "orange")]]
    scenes = [_save(root / f"scene-{i}.png", objects, i, 224)
              for i, objects in enumerate([[("star", "red"), ("circle", "blue")],
                                           [("triangle", "yellow"), ("square", "purple")]])]
    for shape in SHAPES:
        for i in range(EVAL_PER_CLASS):
            colour = list(COLOURS)[i % len(COLOURS)]
            _save(root / "eval" / shape / f"{i}.png", [(shape, colour)], 100 + i, 128)
    return {"singles": singles, "scenes": scenes, "eval": str(root / "eval")}
