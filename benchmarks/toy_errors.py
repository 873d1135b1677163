"""Where the toy model's shape errors are: test-split shape top-1 by drawing style, object size and
image size (the breakdown quoted in docs/toyworld.md).

    python benchmarks/toy_errors.py [MODEL_SPEC] [N]      -> benchmarks/results/toy_eval_shape_breakdown.json
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from vlserve.models import load_dual_encoder
from vlserve.provenance import provenance
from vlserve.toyworld.dataset import single_object
from vlserve.toyworld.scene import SHAPES
from vlserve.toyworld.sheets import style_key

OUT = Path(__file__).parent / "results" / "toy_eval_shape_breakdown.json"


def main(spec: str = "toy", n: int = 1200) -> None:
    model = load_dual_encoder(spec)
    scenes = [single_object("test", i) for i in range(n)]
    img = model.encode_images([s.image for s in scenes])
    pred = (img @ model.encode_texts([f"a photo of a {c}." for c in SHAPES]).T).argmax(1)
    right = [SHAPES[p] == s.objects[0].shape for s, p in zip(scenes, pred, strict=True)]
    groups: dict[str, dict[str, list[bool]]] = {"style": defaultdict(list), "object_size": defaultdict(list),
                                                 "image_px": defaultdict(list)}
    for scene, ok in zip(scenes, right, strict=True):
        obj = scene.objects[0]
        groups["style"][style_key(scene)].append(ok)
        groups["object_size"][obj.size].append(ok)
        groups["image_px"][str(scene.image.shape[0])].append(ok)
    report = {**provenance(), "model": spec, "fingerprint": model.fingerprint, "data": "toyworld:test/shape", "n": n,
              "overall_top1": float(np.mean(right)),
              "top1_by": {g: {k: {"top1": round(float(np.mean(v)), 4), "n": len(v)} for k, v in sorted(d.items())}
                          for g, d in groups.items()}}
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["top1_by"], indent=1))


if __name__ == "__main__":
    main(*(sys.argv[1:2]), *(int(x) for x in sys.argv[2:3]))
