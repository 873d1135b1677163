"""Where a toy OWL-ViT detector loses AP: localisation or recognition.

On ``--n`` multi-object validation scenes (toy world v2, as the training-time check draws them), from
the detector's raw outputs (every patch's box with its score per query, top 300 per image, no NMS):

* ``AP50_shape``: COCO AP50 (pycocotools) over the shape queries, as training reports it;
* ``AP50_class_agnostic``: the same boxes with every label collapsed to "object" (each box once, at
  its best score): how well objects are found at all, whatever they are called;
* ``gt_found_iou50``: share of ground-truth objects with some box of IoU > 0.5 among the top 20;
* ``shape_right_when_found``: of those objects, the share whose best-scoring well-placed box (IoU > 0.5)
  carries the right shape query: recognition where localisation succeeded.

    .venv/bin/python benchmarks/toy_detector_diagnosis.py --model /work/runs/toy_owlvit6 --tag _attempt6
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="a toy OWL-ViT save_pretrained folder")
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--tag", default="")
    args = ap.parse_args()

    from torchvision.ops import box_iou
    from transformers import OwlViTForObjectDetection

    from vlserve.evaluation.detection_ap import Detection, GroundTruth, coco_ap
    from vlserve.toyworld.dataset import detection_scene
    from vlserve.toyworld.detector_train import detection_queries, raw_detections
    from vlserve.toyworld.scene import SHAPES

    torch.set_num_threads(2)
    model = OwlViTForObjectDetection.from_pretrained(args.model).float().eval()
    scenes = [detection_scene("val", i, min_objects=2) for i in range(args.n)]
    queries = detection_queries()
    n_shapes = len(SHAPES)
    raw = raw_detections(model, [s.image for s in scenes], queries, top_k=300)
    sizes = [(int(s.image.shape[0]), int(s.image.shape[1])) for s in scenes]

    def shape_of(q: int) -> str:
        return queries[q].split()[-1]

    gts = [[GroundTruth(tuple(map(float, o.box)), o.shape) for o in s.objects] for s in scenes]
    dets = [[Detection(b, shape_of(q), sc) for b, q, sc in r if q < n_shapes] for r in raw]
    ap_shape = coco_ap(gts, dets, list(SHAPES), sizes)["AP50"]
    agnostic_gts = [[GroundTruth(tuple(map(float, o.box)), "object") for o in s.objects] for s in scenes]
    agnostic = []
    for r in raw:
        best: dict[tuple[float, ...], float] = {}
        for box, _, sc in r:
            best[box] = max(sc, best.get(box, 0.0))
        agnostic.append([Detection(b, "object", sc) for b, sc in best.items()])
    ap_agnostic = coco_ap(agnostic_gts, agnostic, ["object"], sizes)["AP50"]
    found, right = [], []
    for s, r in zip(scenes, raw, strict=True):
        boxes = torch.tensor([b for b, _, _ in r], dtype=torch.float32)
        for o in s.objects:
            iou = box_iou(torch.tensor([o.box], dtype=torch.float32), boxes)[0]
            found.append(float(iou[:20].max()) > 0.5)
            placed = [(sc, q) for (_, q, sc), v in zip(r, iou, strict=True) if v > 0.5 and q < n_shapes]
            if placed:
                right.append(shape_of(max(placed)[1]) == o.shape)
    write_result("toy_detector_diagnosis" + args.tag, {
        "model": args.model, "scenes": args.n, "objects": len(found), "queries": queries,
        "AP50_shape": round(float(ap_shape), 4), "AP50_class_agnostic": round(float(ap_agnostic), 4),
        "gt_found_iou50": round(float(np.mean(found)), 4),
        "shape_right_when_found": round(float(np.mean(right)), 4), "objects_found_with_shape_query": len(right)})


if __name__ == "__main__":
    main()
