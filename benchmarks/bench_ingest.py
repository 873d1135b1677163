"""Bulk indexing throughput vs the encoder alone.

``vlserve index build`` over ``--n`` JPEGs (toy-world scenes upscaled to 320x240, so decoding and
resizing cost what small photos cost) with a ViT-B-32-sized open_clip model (random weights: speed
only), local runner (decode + preprocess in worker processes, batched encoding in the main
process), against the same model's pure encoder throughput on preloaded, preprocessed tensors at
the same batch size, measured before and after the build (averaged, since the machine may be shared).
Target: indexing >= 0.9x the encoder alone.

    .venv/bin/python benchmarks/bench_ingest.py [--n 2000] [--batch-size 64] [--precision fp32]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_result


def write_jpegs(folder: Path, n: int) -> None:
    from vlserve.toyworld.dataset import sample

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = Image.fromarray(sample("test", i).scene.image).resize((320, 240), Image.BICUBIC)
        img.save(folder / f"{i:05d}.jpg", quality=90)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", default="open_clip:ViT-B-32?init=random")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--baseline-n", type=int, default=512, help="preloaded tensors for the encoder-only rate")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: cores - 1)")
    args = p.parse_args()

    import torch

    from vlserve.ingest.local import default_workers
    from vlserve.ingest.pipeline import BuildOptions, build
    from vlserve.models import Runtime, load_dual_encoder

    load_start = round(os.getloadavg()[0], 2)
    tmp = Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    try:
        t = time.perf_counter()
        write_jpegs(tmp / "images", args.n)
        write_s = time.perf_counter() - t
        enc = load_dual_encoder(args.spec, Runtime(device="cpu", precision=args.precision, max_batch=args.batch_size))
        files = sorted((tmp / "images").iterdir())
        pixels = enc.preprocess([f.read_bytes() for f in files[:args.baseline_n]])
        enc.encode_pixels(pixels[:args.batch_size])  # warm-up

        def encoder_alone() -> float:
            t = time.perf_counter()
            enc.encode_pixels(pixels)
            rate = len(pixels) / (time.perf_counter() - t)
            print(f"encoder alone: {rate:.2f} img/s on {len(pixels)} preloaded tensors", flush=True)
            return rate

        before = encoder_alone()
        workers = default_workers() if args.workers is None else args.workers
        t = time.perf_counter()
        report = build(tmp / "index", "bench", [str(tmp / "images")],
                       BuildOptions(workers=workers, batch_size=args.batch_size, shard_size=500, captions=False,
                                    progress=True), encoder=enc)
        wall = time.perf_counter() - t
        after = encoder_alone()  # bracket the build: the machine may be shared
        encoder_rate = (before + after) / 2
        ingest_rate = report["items_per_s"]
        ratio = ingest_rate / encoder_rate
        write_result("bench_ingest", {
            "model": args.spec, "precision": args.precision, "batch_size": args.batch_size, "images": args.n,
            "image_size": [320, 240], "decode_workers": workers, "torch_threads": torch.get_num_threads(),
            "write_jpegs_s": round(write_s, 1),
            "encoder_only_img_per_s": round(encoder_rate, 2),
            "encoder_only_before_after": [round(before, 2), round(after, 2)],
            "index_build_img_per_s": ingest_rate,
            "ratio": round(ratio, 3), "target": ">= 0.9", "met": ratio >= 0.9,
            "build_wall_s_incl_merge": round(wall, 1), "encode_phase_s": report["encode_seconds"],
            "count": report["count"], "factory": report["factory"],
            "loadavg_1m_start_end": [load_start, round(os.getloadavg()[0], 2)],
        })
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
