"""Detection evaluation: COCO AP (pycocotools) of a detector on toy world v2 scenes or a COCO file.

Toy world (``toyworld:SPLIT``): multi-object scenes (2-4 objects, partly occluding each other, every
drawing style), scored three ways:

* text queries naming shapes ("a photo of a star"): AP over the 6 shapes;
* text queries naming colour and shape ("a photo of a red star"): AP over the 36 pairs;
* image queries (one-shot): for each shape, one example object from a validation scene (its box
  given), searched for in the target scenes: AP over the 6 shapes.

and broken down by drawing style (objects of the other styles count as COCO "crowd" regions there:
finding them is neither a hit nor a false positive).

A COCO annotation file (``instances.json``, images beside it or under ``--images``) is scored with
its category names as text queries.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vlserve.errors import InvalidInput
from vlserve.evaluation.detection_ap import Detection, GroundTruth, coco_ap

TEMPLATE = "a photo of a {}"
ProgressFn = Callable[[int], None]


def _detect_all(detector: Any, images: Sequence[Any], batch: int, progress: ProgressFn | None,
                **kwargs: Any) -> list[Any]:
    out: list[Any] = []
    for start in range(0, len(images), batch):
        out += detector.detect(list(images[start:start + batch]), **kwargs)
        if progress:
            progress(len(images[start:start + batch]))
    return out


def _as_coco(results: Sequence[Any], names: Sequence[str]) -> list[list[Detection]]:
    return [[Detection(tuple(d.box), names[d.query], float(d.score)) for d in r.detections] for r in results]


def toy_detection_report(detector: Any, split: str = "test", n: int = 300, threshold: float = 0.01,
                         nms_iou: float = 0.5, top_k: int = 100, batch: int = 16,
                         progress: ProgressFn | None = None) -> dict[str, Any]:
    """AP50/AP of ``detector`` (an :class:`~vlserve.detection.engine.ObjectDetector`) on ``n`` toy scenes."""
    from vlserve.toyworld.dataset import detection_scene, single_object
    from vlserve.toyworld.queries import COLOUR_SHAPES
    from vlserve.toyworld.scene import SHAPES
    from vlserve.toyworld.sheets import object_style

    scenes = [detection_scene(split, i, min_objects=2) for i in range(n)]
    images = [s.image for s in scenes]
    sizes = [(int(s.image.shape[0]), int(s.image.shape[1])) for s in scenes]
    opts = {"threshold": threshold, "nms_iou": nms_iou, "top_k": top_k}
    pairs = COLOUR_SHAPES

    # one example object per shape, from validation scenes (never a target)
    examples: dict[str, tuple[np.ndarray, tuple[float, ...]]] = {}
    i = 0
    while len(examples) < len(SHAPES):
        scene = single_object("val", i)
        obj = scene.objects[0]
        if obj.shape not in examples and obj.size == "large" and "filled" in obj.style:
            examples[obj.shape] = (scene.image, tuple(float(v) for v in obj.box))
        i += 1

    runs: dict[str, tuple[list[str], Callable[[Any], str], dict[str, Any]]] = {
        "text_shape": (list(SHAPES), lambda o: o.shape,
                       {"queries": [TEMPLATE.format(s) for s in SHAPES]}),
        "text_colour_shape": (pairs, lambda o: f"{o.colour} {o.shape}",
                              {"queries": [TEMPLATE.format(p) for p in pairs]}),
        "image_shape": (list(SHAPES), lambda o: o.shape,
                        {"query_images": [examples[s][0] for s in SHAPES],
                         "query_boxes": [examples[s][1] for s in SHAPES]}),
    }
    report: dict[str, Any] = {"split": split, "n_scenes": n, "n_objects": sum(len(s.objects) for s in scenes),
                              "threshold": threshold, "nms_iou": nms_iou, "top_k": top_k,
                              "query_template": TEMPLATE,
                              "image_query_examples": {s: f"toyworld val single-object scene, box {list(b)}"
                                                       for s, (_, b) in examples.items()}}
    styles = sorted({object_style(o.style) for s in scenes for o in s.objects})
    for key, (cats, label, query) in runs.items():
        results = _detect_all(detector, images, batch, progress, **query, **opts)
        dets = _as_coco(results, cats)
        gts = [[GroundTruth(tuple(map(float, o.box)), label(o)) for o in s.objects] for s in scenes]  # type: ignore[arg-type]
        overall = coco_ap(gts, dets, cats, sizes)
        by_style = {}
        for style in styles:
            gts_style = [[GroundTruth(tuple(map(float, o.box)), label(o), ignore=object_style(o.style) != style)  # type: ignore[arg-type]
                          for o in s.objects] for s in scenes]
            r = coco_ap(gts_style, dets, cats, sizes)
            by_style[style] = {"AP50": _r(r["AP50"]),
                               "n_objects": sum(object_style(o.style) == style for s in scenes for o in s.objects)}
        report[key] = {"AP50": _r(overall["AP50"]), "AP": _r(overall["AP"]), "AP75": _r(overall["AP75"]),
                       "AP50_per_category": {c: _r(v) for c, v in overall["AP50_per_category"].items()},
                       "AP50_by_style": by_style}
    return report


def coco_file_report(detector: Any, annotations: Path, images_dir: Path | None = None, n: int | None = None,
                     threshold: float = 0.01, nms_iou: float = 0.5, top_k: int = 100, batch: int = 8,
                     progress: ProgressFn | None = None) -> dict[str, Any]:
    """COCO AP of ``detector`` on a COCO-format annotation file, querying each category by name."""
    try:
        data = json.loads(annotations.read_text())
        cats = {c["id"]: c["name"] for c in data["categories"]}
        entries = data["images"][:n] if n else data["images"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InvalidInput(f"{annotations}: not a readable COCO annotation file ({e})", field="data") from None
    root = images_dir or annotations.parent
    names = list(cats.values())
    by_image: dict[int, list[GroundTruth]] = {e["id"]: [] for e in entries}
    for a in data.get("annotations", []):
        if a["image_id"] in by_image:
            x, y, w, h = a["bbox"]
            by_image[a["image_id"]].append(GroundTruth((x, y, x + w, y + h), cats[a["category_id"]],
                                                       ignore=bool(a.get("iscrowd"))))
    paths = [root / e["file_name"] for e in entries]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise InvalidInput(f"{len(missing)} image(s) named in {annotations} not found, e.g. {missing[0]}", field="data")
    results = _detect_all(detector, [p.read_bytes() for p in paths], batch, progress,
                          queries=[TEMPLATE.format(c) for c in names], threshold=threshold, nms_iou=nms_iou,
                          top_k=top_k)
    overall = coco_ap([by_image[e["id"]] for e in entries], _as_coco(results, names), names,
                      [(e["height"], e["width"]) for e in entries])
    return {"annotations": str(annotations), "n_images": len(entries), "query_template": TEMPLATE,
            "threshold": threshold, "nms_iou": nms_iou, "top_k": top_k,
            "text": {"AP50": _r(overall["AP50"]), "AP": _r(overall["AP"]), "AP75": _r(overall["AP75"]),
                     "AP50_per_category": {c: _r(v) for c, v in overall["AP50_per_category"].items()}}}


def _r(v: Any) -> float | None:
    return None if v is None else round(float(v), 4)
