"""Bulk indexing through the ``vlserve index build`` CLI vs the encoder alone, by wall time.

``--n`` JPEGs (toy-world scenes upscaled to 320x240, so decoding and resizing cost what small photos
cost), a ViT-B-32-sized open_clip model (``open_clip:ViT-B-32?init=random``: seeded, so both arms
run the same weights), fp32, batch 64, the default decoding workers (cores - 1).

* **ingest**: ``vlserve index build DIR --model SPEC`` as a user runs it, into a fresh index each
  round; the wall time of the whole process: interpreter start, model load, listing, decoding,
  encoding, shard writes and the merge. Its rate is N / that wall time.
* **encoder only**: the same model in this process encoding the same N images as preloaded,
  preprocessed tensors (``encode_pixels``) at the same batch size.

Interleaved paired rounds after a warm-up (ingest, encoder, then reversed); the ratio
ingest rate / encoder rate per round, reported as median [min, max]. The build's own timer (model
loaded -> merged, listing and interpreter start excluded) is reported beside it.

    .venv/bin/python benchmarks/bench_ingest.py [--n 384] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from _common import paired_rounds, ratios, spread, write_result


def write_jpegs(folder: Path, n: int) -> None:
    from vlserve.toyworld.dataset import sample

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = Image.fromarray(sample("test", i).scene.image).resize((320, 240), Image.Resampling.BICUBIC)
        img.save(folder / f"{i:05d}.jpg", quality=90)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", default="open_clip:ViT-B-32?init=random")
    p.add_argument("--n", type=int, default=384)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()

    from vlserve.ingest.local import default_workers
    from vlserve.models import Runtime, load_dual_encoder

    tmp = Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLSERVE_PRECISION": "fp32", "VLSERVE_DEVICE": "cpu"}
    build_reports: list[dict[str, Any]] = []
    try:
        write_jpegs(tmp / "images", args.n)
        enc = load_dual_encoder(args.spec, Runtime(device="cpu", precision="fp32", max_batch=args.batch_size))
        pixels = enc.preprocess([f.read_bytes() for f in sorted((tmp / "images").iterdir())])
        cmd = [sys.executable, "-m", "vlserve", "index", "build", str(tmp / "images"), "--model", args.spec,
               "--name", "bench", "--index-dir", str(tmp / "index"), "--batch-size", str(args.batch_size),
               "--no-progress"]

        def ingest() -> float:
            shutil.rmtree(tmp / "index", ignore_errors=True)
            t = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            wall = time.perf_counter() - t
            if r.returncode != 0:
                raise SystemExit(f"index build failed:\n{r.stderr[-3000:]}")
            report = json.loads(r.stdout)
            assert report["count"] == args.n, report
            build_reports.append({"wall_s": round(wall, 2), "build_seconds": report["seconds"],
                                  "encode_seconds": report["encode_seconds"]})
            return args.n / wall

        def encoder_only() -> float:
            t = time.perf_counter()
            enc.encode_pixels(pixels)
            return len(pixels) / (time.perf_counter() - t)

        per_round = paired_rounds({"ingest_img_per_s": ingest, "encoder_only_img_per_s": encoder_only}, args.rounds)
        rounds = build_reports[1:]  # the warm-up's first
        own_timer = spread([args.n / r["build_seconds"] / e for r, e in
                            zip(rounds, per_round["encoder_only_img_per_s"], strict=True)])
        ratio = ratios(per_round, "ingest_img_per_s", "encoder_only_img_per_s")
        write_result("bench_ingest", {
            "model": args.spec, "precision": "fp32", "batch_size": args.batch_size, "images": args.n,
            "image_size": [320, 240], "decode_workers": default_workers(), "rounds": args.rounds,
            "command_timed": " ".join(["vlserve", *cmd[3:]]),
            "img_per_s": {k: spread(v, 2) for k, v in per_round.items()},
            "build_runs": rounds,
            "ratio_ingest_wall_over_encoder_only": ratio,
            "ratio_build_own_timer_over_encoder_only": own_timer,
            "target": "ingest >= 0.9x encoder-only by wall time", "met": ratio["median"] >= 0.9,
        })
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
