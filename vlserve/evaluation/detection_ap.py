"""Detection average precision with COCO's own evaluator (pycocotools), never a hand-written AP.

Ground truth and detections are given per image as plain tuples; they are turned into an in-memory
COCO dataset and scored by ``COCOeval`` (bbox). A ground-truth box marked ``ignore`` becomes a COCO
*crowd* region: detections on it count neither as hits nor as false positives, which is how a
breakdown (for example by drawing style) scores one group without punishing detections of the others.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels


@dataclass(frozen=True)
class GroundTruth:
    box: Box
    category: str
    ignore: bool = False


@dataclass(frozen=True)
class Detection:
    box: Box
    category: str
    score: float


def coco_ap(ground_truth: Sequence[Sequence[GroundTruth]], detections: Sequence[Sequence[Detection]],
            categories: Sequence[str], image_sizes: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """AP (IoU .50:.95), AP50, AP75 over ``categories`` (those with ground truth), and AP50 per category.

    ``image_sizes`` are (height, width) per image. Detections of categories outside ``categories`` are
    dropped. Returns ``{"AP": .., "AP50": .., "AP75": .., "AP50_per_category": {name: AP50 or None}}``.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not len(ground_truth) == len(detections) == len(image_sizes):
        raise ValueError("ground truth, detections and image sizes must cover the same images")
    cat_id = {c: i + 1 for i, c in enumerate(categories)}
    images: list[dict[str, object]] = []
    anns: list[dict[str, object]] = []
    dets: list[dict[str, object]] = []
    for img_id, (gts, ds, (h, w)) in enumerate(zip(ground_truth, detections, image_sizes, strict=True), start=1):
        images.append({"id": img_id, "height": int(h), "width": int(w)})
        for g in gts:
            if g.category not in cat_id:
                continue
            x0, y0, x1, y1 = g.box
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": cat_id[g.category],
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": float((x1 - x0) * (y1 - y0)),
                         "iscrowd": int(g.ignore)})
        for d in ds:
            if d.category not in cat_id:
                continue
            x0, y0, x1, y1 = d.box
            dets.append({"image_id": img_id, "category_id": cat_id[d.category],
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(d.score)})
    empty = {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "AP50_per_category": {c: None for c in categories}}
    if not anns:
        return {**empty, "AP": None, "AP50": None, "AP75": None}
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns,
                  "categories": [{"id": i, "name": c} for c, i in cat_id.items()]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        if not dets:
            return empty
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # precision: [IoU thresholds, recall points, categories, area ranges, max dets]; -1 where no ground truth
    precision = ev.eval["precision"]
    per_cat: dict[str, float | None] = {}
    for k, cid in enumerate(ev.params.catIds):
        p = precision[0, :, k, 0, -1]
        name = categories[cid - 1]
        per_cat[name] = float(np.mean(p[p > -1])) if (p > -1).any() else None
    return {"AP": float(ev.stats[0]), "AP50": float(ev.stats[1]), "AP75": float(ev.stats[2]),
            "AP50_per_category": per_cat}
