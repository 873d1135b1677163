"""onnxruntime (CPU) vs torch (CPU) on the same exported ViT-B-32-sized open_clip image tower (seeded
random weights): preprocessed images per second at batch 1, 8 and 32, interleaved paired rounds
(torch, onnx, then onnx, torch...) after a warm-up; the ratio onnx/torch is the median and [min, max]
over rounds. Both sides get the same pixels and the same thread count; parity (max |delta|) is
recorded beside the speeds.

    .venv/bin/python benchmarks/bench_onnx.py [--rounds 5] [--seconds 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import paired_rounds, ratios, spread, write_result

SPEC = "open_clip:ViT-B-32?init=random"


def rate(fn: Any, batch: int, seconds: float) -> float:
    """Images per second of ``fn`` on one batch, over at least ``seconds`` (at least one call)."""
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += batch
        if time.perf_counter() - t0 >= seconds:
            return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,8,32")
    args = ap.parse_args()
    import onnxruntime as ort
    import torch

    from vlserve.models import load_dual_encoder
    from vlserve.models.onnx_export import OnnxTowers, export_towers
    from vlserve.settings import Runtime

    torch.set_num_threads(args.threads)
    encoder = load_dual_encoder(SPEC, Runtime(device="cpu", precision="fp32", max_batch=64))
    folder = Path(tempfile.mkdtemp(prefix="vlserve-onnx-"))
    manifest = export_towers(encoder, folder)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(str(folder / "image_encoder.onnx"), options, providers=["CPUExecutionProvider"])
    towers = OnnxTowers(folder)
    towers.image = session
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(max(int(b) for b in
                                                                                     args.batches.split(",")))]
    pixels_all = encoder.preprocess(images)
    delta = float(np.abs(encoder.encode_pixels(pixels_all[:8]) - towers.encode_pixels(pixels_all[:8])).max())
    results: dict[str, Any] = {}
    for batch in (int(b) for b in args.batches.split(",")):
        pixels = pixels_all[:batch]
        arms = {"torch": lambda p=pixels, b=batch: rate(lambda: encoder.encode_pixels(p), b, args.seconds),
                "onnxruntime": lambda p=pixels, b=batch: rate(lambda: towers.encode_pixels(p), b, args.seconds)}
        per_round = paired_rounds(arms, args.rounds)
        results[f"batch_{batch}"] = {"images_per_s": {k: spread(v, 2) for k, v in per_round.items()},
                                     "onnx_over_torch": ratios(per_round, "onnxruntime", "torch")}
    write_result("onnx_vs_torch", {
        "model": SPEC, "what": "image tower, preprocessed 224 px pixels -> L2-normalised embeddings, CPU fp32",
        "threads": args.threads, "rounds": args.rounds, "seconds_per_arm": args.seconds, "opset": manifest["opset"],
        "exporter": manifest["exporter"], "onnxruntime": ort.__version__, "parity_max_abs_delta": delta,
        "results": results})


if __name__ == "__main__":
    main()
