"""Example inputs drawn from the toy world (deterministic), written once to a cache folder so every tab
works on first start with the embedded models."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from vlserve.toyworld.dataset import COLOURS, SHAPES, composed_scene

EVAL_PER_CLASS = 6


def _save(path: Path, scene_image: object) -> str:
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(scene_image).save(path)  # type: ignore[arg-type]
    return str(path)


def toy_examples(root: Path) -> dict[str, list[str] | str]:
    """Paths of example images under ``root``: single shapes, two-object scenes, and a labelled folder
    (``eval/SHAPE/*.png``) for the Evaluate tab."""
    root.mkdir(parents=True, exist_ok=True)
    singles = [_save(root / f"{colour}-{shape}.png", composed_scene([(shape, colour)], index=3, image_size=160).image)
               for shape, colour in [("triangle", "blue"), ("star", "red"), ("circle", "green"),
                                     ("cross", "orange")]]
    scenes = [_save(root / f"scene-{i}.png", composed_scene(objects, index=i, image_size=224).image)
              for i, objects in enumerate([[("star", "red"), ("circle", "blue")],
                                           [("triangle", "yellow"), ("square", "purple")]])]
    for shape in SHAPES:
        for i in range(EVAL_PER_CLASS):
            colour = list(COLOURS)[i % len(COLOURS)]
            _save(root / "eval" / shape / f"{i}.png", composed_scene([(shape, colour)], index=100 + i,
                                                                    image_size=128).image)
    return {"singles": singles, "scenes": scenes, "eval": str(root / "eval")}
