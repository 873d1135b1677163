"""Open-vocabulary detection speed: vlserve vs transformers' pipeline, and Triton vs in-process.

Model: one random OWL-ViT written by this script (seeded, so every arm has the same weights), sized
so the image tower dominates as in real use while staying CPU-cheap: vision 4 layers, hidden 128,
MLP 512, 4 heads, 224 px, patch 16 (196 patches, 196 boxes per image); text 2 layers, hidden 64,
MLP 256, 2 heads, 16 tokens; projection 64. Inputs: the first ``--images`` (default 8)
toy scenes ``vlserve.toyworld.dataset.detection_scene("test", i)`` (64 px, stretched to 224 by the
processor) as PNG bytes, decoded on every side, and the same 8 text queries ("a red circle", ...).
One threshold everywhere: a random model scores nearly every (box, query) pair near 0.5, so the
default 0.1 would have the pipeline return all 196 x 8 pairs per image as Python dicts; unless
``--threshold`` is given the script sets it to the 99th percentile of every pair's score on these
images (a few boxes per image, as with a real model). vlserve keeps its defaults (per-query NMS
0.3, top-k 100), which the pipeline does not do, so vlserve does a little more work.

1. ``vlserve_batched``: ``ObjectDetector.detect`` on all the images at once, queries cached after
   the warm-up, vs ``pipeline_docs``: ``transformers.pipeline("zero-shot-object-detection")``
   called as its docs show for several images (a list of ``{"image", "candidate_labels"}`` dicts).
   Ratio: vlserve / pipeline images/s (target >= 3).
2. ``triton_c8``: the ``detector`` model as ``vlserve repo build --detector-model`` writes it (the
   shipped settings: ``max_batch_size`` 64, preferred 8/16/32, 2 ms queue delay, one instance) in one
   tritonserver, called by 8 client threads (each its own gRPC ``VLServeClient``), one image per
   request, vs in-process ``ObjectDetector.detect`` one image at a time (``in_process_sequential``)
   and on the whole batch (``vlserve_batched``, the same arm as in 1). Ratios: Triton c8 / each
   (target >= 0.8 against sequential and batched).

All four arms run in one set of interleaved paired rounds after a warm-up (order reversed every
other round); every arm runs whole passes over the images for at least ``--seconds``. Ratios are
the median and [min, max] of per-round values.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_detection.py [--rounds 5] [--seconds 2] [--images 8]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from _common import paired_rounds, ratios, running_bench_triton, spread, write_result

QUERIES = ["a red circle", "a green square", "a blue triangle", "a yellow star", "a purple cross",
           "an orange diamond", "a red star", "a blue circle"]
VISION = {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 4,
          "image_size": 224, "patch_size": 16}
TEXT = {"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2,
        "max_position_embeddings": 16, "vocab_size": 49408}
PROJECTION = 64


def build_owl(dir_: Path, seed: int = 0) -> Path:
    """The benchmark's random OWL-ViT with its processor (224 px stretch), like tests' save_hf_owl."""
    import torch
    from tiny_models import _small_heads, write_owl_tokenizer
    from transformers import OwlViTConfig, OwlViTForObjectDetection, OwlViTImageProcessor, OwlViTProcessor

    torch.manual_seed(seed)
    tok = write_owl_tokenizer(dir_)
    model = OwlViTForObjectDetection(OwlViTConfig(text_config=TEXT, vision_config=VISION, projection_dim=PROJECTION))
    _small_heads(model)
    model.save_pretrained(dir_)
    size = {"height": VISION["image_size"], "width": VISION["image_size"]}
    processor = OwlViTProcessor(image_processor=OwlViTImageProcessor(size=size, crop_size=size), tokenizer=tok)
    processor.save_pretrained(dir_)
    return dir_


def png_scenes(n: int) -> list[bytes]:
    from vlserve.toyworld.dataset import detection_scene

    out = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(detection_scene("test", i).image).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def timed(seconds: float, one_pass: Any, per_pass: int) -> float:
    """Images/s over whole passes, at least ``seconds`` (and at least one pass)."""
    n, t = 0, time.perf_counter()
    while n == 0 or time.perf_counter() - t < seconds:
        one_pass()
        n += per_pass
    return n / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--seconds", type=float, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--threshold", type=float, default=None, help="default: 99th percentile of pair scores")
    args = p.parse_args()

    from transformers import pipeline

    from vlserve.detection.engine import ObjectDetector
    from vlserve.models import Runtime, load_detector
    from vlserve.serving.client import VLServeClient
    from vlserve.serving.repository import RepoOptions, build_repository

    model_dir = build_owl(Path(tempfile.mkdtemp(prefix="bench-owl-")) / "owl")
    spec = f"hf:{model_dir}"
    images = png_scenes(args.images)
    n = len(images)
    shipped = RepoOptions()
    detector = ObjectDetector(load_detector(spec, Runtime(device="cpu", precision="fp32",
                                                          max_batch=shipped.max_batch_size)))
    if args.threshold is None:
        import torch

        with torch.no_grad():
            feats = detector.model.encode_images(images)
            logits = detector.model.class_logits(feats, detector.queries(QUERIES).embeddings)
        args.threshold = round(float(np.quantile(torch.sigmoid(logits).float().numpy(), 0.99)), 4)
        print(f"threshold {args.threshold}", flush=True)
    pipe = pipeline("zero-shot-object-detection", model=str(model_dir), device="cpu")

    repo = Path(tempfile.mkdtemp(prefix="bench-repo-"))
    build_repository(repo, "toy", models=("detector",), opts=shipped, detector_spec=spec)
    config = (repo / "detector" / "config.pbtxt").read_text()
    batch_formed: list[float] = []
    boxes_found: dict[str, int] = {}
    with running_bench_triton(repo) as tri:
        ready_s = tri.ready_s
        clients = [VLServeClient(tri.server.grpc_url, "grpc") for _ in range(args.concurrency)]

        def batched_pass() -> None:
            found = detector.detect(images, QUERIES, threshold=args.threshold)
            boxes_found["vlserve_batched"] = sum(len(d.detections) for d in found)

        def sequential_pass() -> None:
            for img in images:
                detector.detect([img], QUERIES, threshold=args.threshold)

        def pipeline_pass() -> None:
            # decode as the other arms do; the call as the pipeline's docs show for several images
            found = pipe([{"image": Image.open(io.BytesIO(b)).convert("RGB"), "candidate_labels": QUERIES}
                          for b in images], threshold=args.threshold)
            boxes_found["pipeline_docs"] = sum(len(f) for f in found)

        def triton_pass() -> None:
            errors: list[BaseException] = []

            def worker(k: int) -> None:
                try:
                    for i in range(k, n, args.concurrency):
                        clients[k].detect([images[i]], QUERIES, threshold=args.threshold)
                except BaseException as e:  # surfaced after join
                    errors.append(e)

            threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.concurrency)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            if errors:
                raise errors[0]

        def triton() -> float:
            req0, exec0 = tri.counts("detector")
            rate = timed(args.seconds, triton_pass, n)
            req1, exec1 = tri.counts("detector")
            batch_formed.append((req1 - req0) / max(exec1 - exec0, 1))
            return rate

        arms = {"vlserve_batched": lambda: timed(args.seconds, batched_pass, n),
                "pipeline_docs": lambda: timed(args.seconds, pipeline_pass, n),
                "triton_c8": triton,
                "in_process_sequential": lambda: timed(args.seconds, sequential_pass, n)}
        per_round = paired_rounds(arms, args.rounds)
        for c in clients:
            c.close()
    del batch_formed[0]  # the warm-up's
    r = {"vlserve_batched_over_pipeline": ratios(per_round, "vlserve_batched", "pipeline_docs"),
         "triton_c8_over_in_process_sequential": ratios(per_round, "triton_c8", "in_process_sequential"),
         "triton_c8_over_in_process_batched": ratios(per_round, "triton_c8", "vlserve_batched")}
    targets = {"vlserve_batched_over_pipeline": 3.0, "triton_c8_over_in_process_sequential": 0.8,
               "triton_c8_over_in_process_batched": 0.8}
    write_result("bench_detection", {
        "spec": "random OWL-ViT written by build_owl (seed 0)", "precision": "fp32",
        "model_config": {"vision": VISION, "text": TEXT, "projection_dim": PROJECTION},
        "images": f"{n} toy scenes detection_scene('test', 0..{n - 1}), 64x64 PNG, decode included on every side",
        "queries": QUERIES, "threshold": args.threshold,
        "threshold_rule": "given (--threshold)" if "--threshold" in sys.argv
        else "99th percentile of all (box, query) scores",
        "boxes_found_last_pass": boxes_found,
        "seconds_per_point": args.seconds, "rounds": args.rounds,
        "pipeline_call": "pipeline('zero-shot-object-detection', model=DIR)([{'image': PIL, 'candidate_labels': "
                         "QUERIES}, ...], threshold=T)",
        "triton": {"repository_config": config, "ready_seconds": round(ready_s, 1),
                   "protocol": "gRPC VLServeClient.detect, one image per request",
                   "concurrency": args.concurrency, "mean_batch_formed": spread(batch_formed, 2)},
        "images_per_s": {k: spread(v, 2) for k, v in per_round.items()},
        "ratios": r,
        "targets": {k: f">= {v}" for k, v in targets.items()},
        "met": {k: r[k]["median"] >= v for k, v in targets.items()},
    })


if __name__ == "__main__":
    main()
