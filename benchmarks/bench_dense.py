"""Pixel-text maps vs a plain image embedding, like for like: the same tower, the same image (one
640x480 JPEG, decoded inside the timing on both sides), 10 labels (their text embeddings cached after
the warm-up, as a server holds them).

* ``embed``: ``encode_images([jpeg])``, the tower's forward for one image embedding;
* ``dense_<method>``: ``PixelText.segment([jpeg], 10 labels, method)``: the dense forward, the
  score-map products, upsampling to the image's size (maps at most 512 on the longer side) and the
  argmax.

Models: the embedded ``toy`` (ResNet; ``maskclip`` and its DenseCLIP head) and a ViT-B/16-sized open_clip
tower with seeded random weights (``maskclip``, ``sclip``, ``clearclip``; speed only). Arms run in
interleaved rounds after a warm-up; each arm's value is the median of ``--calls`` calls. Also written:
the bytes of a 4000x3000 photo's response (score maps FP16 + segmentation INT32), bounded by the
512-pixel map limit.

    .venv/bin/python benchmarks/bench_dense.py [--rounds 7] [--calls 5]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from _common import paired_rounds, ratios, spread, write_result

LABELS = ["circle", "square", "triangle", "star", "cross", "diamond", "red object", "blue object", "dog", "sky"]


def jpeg(h: int, w: int) -> bytes:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def timed(fn: Any, calls: int) -> float:
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def bench_model(spec: str, methods: list[str], rounds: int, calls: int, image: bytes) -> dict[str, Any]:
    from vlserve.dense.segmenter import PixelText
    from vlserve.dense.service import default_head_dir
    from vlserve.models import load_dual_encoder

    enc = load_dual_encoder(spec)
    pt = PixelText(enc, default_head_dir(enc) if "denseclip" in methods else None)
    arms = {"embed": lambda: timed(lambda: enc.encode_images([image]), calls)}
    for m in methods:
        arms[f"dense_{m}"] = (lambda m=m: timed(lambda: pt.segment([image], LABELS, m), calls))
    per_round = paired_rounds(arms, rounds)
    return {"spec": spec, "image_size": list(enc.image_size),
            "ms_per_call": {k: spread(v, 2) for k, v in per_round.items()},
            "ratio_to_embed": {m: ratios(per_round, f"dense_{m}", "embed") for m in methods}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=5)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    image = jpeg(480, 640)
    results = {"toy": bench_model("toy", ["maskclip", "denseclip"], args.rounds, args.calls, image),
               "vit_b16": bench_model("open_clip:ViT-B-16?init=random", ["maskclip", "sclip", "clearclip"],
                                      args.rounds, args.calls, image)}
    from vlserve.dense.segmenter import PixelText
    from vlserve.dense.service import pack
    from vlserve.models import load_dual_encoder

    big = jpeg(3000, 4000)
    packed = pack(PixelText(load_dual_encoder("toy")).segment([big], LABELS, "maskclip"))
    results["large_photo_response"] = {"image": "4000x3000 JPEG", "labels": len(LABELS),
                                       "map_size": packed["OUTPUT_SIZE"][0].tolist(),
                                       "bytes": int(sum(a.nbytes for k, a in packed.items() if k != "METHOD_USED"))}
    write_result("dense_speed", {"labels": LABELS, "image": "640x480 JPEG", "calls_per_arm": args.calls,
                                "rounds": args.rounds, "results": results})


if __name__ == "__main__":
    main()
