"""Detection quality on toy world v2 scenes, scored with COCO's evaluator: the toy detector's check
during training (raw OWL-ViT outputs over all shape and colour+shape queries)."""

from __future__ import annotations

from typing import Any

from vlserve.evaluation.detection_ap import Detection, GroundTruth, coco_ap
from vlserve.toyworld.dataset import detection_scene
from vlserve.toyworld.detector_train import detection_queries, raw_detections
from vlserve.toyworld.queries import COLOUR_SHAPES
from vlserve.toyworld.scene import SHAPES

SHAPE_CATEGORIES = list(SHAPES)
COLOUR_SHAPE_CATEGORIES = COLOUR_SHAPES


def raw_ap50(model: Any, split: str = "val", n: int = 200) -> dict[str, float | None]:
    """AP50 over the shape queries and over the colour+shape queries on ``n`` multi-object scenes."""
    scenes = [detection_scene(split, i, min_objects=2) for i in range(n)]
    names = SHAPE_CATEGORIES + COLOUR_SHAPE_CATEGORIES
    raw = raw_detections(model, [s.image for s in scenes], detection_queries())
    sizes = [(int(s.image.shape[0]), int(s.image.shape[1])) for s in scenes]
    out: dict[str, float | None] = {}
    for key, cats, label in (("AP50_shape", SHAPE_CATEGORIES, lambda o: o.shape),
                             ("AP50_colour_shape", COLOUR_SHAPE_CATEGORIES, lambda o: f"{o.colour} {o.shape}")):
        gts = [[GroundTruth(tuple(map(float, o.box)), label(o)) for o in s.objects] for s in scenes]  # type: ignore[arg-type]
        dets = [[Detection(box, names[q], score) for box, q, score in r if names[q] in cats] for r in raw]
        ap = coco_ap(gts, dets, cats, sizes)["AP50"]
        out[key] = None if ap is None else round(float(ap), 4)
    return out
