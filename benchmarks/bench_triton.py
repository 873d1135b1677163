"""In-process encoder throughput vs the same model behind Triton, on the shipped repository settings.

Model: ViT-B-32-sized open_clip, seeded random weights (``open_clip:ViT-B-32?init=random``: both
sides load the same weights). Input: 224 px JPEGs, decoding included on both sides. Triton: the
``image_encoder`` model exactly as ``vlserve repo build`` writes it (the shipped ``config.pbtxt``:
``max_batch_size`` 64, dynamic batching with preferred sizes 8/16/32 and a 2 ms queue delay, one
instance), called with single-image gRPC requests from 1/4/16 client threads that share this
machine's cores with the server. In-process: ``encode_images`` at batch 1/8/32.

Every point runs ``--seconds`` per round; the six points run in interleaved paired rounds after a
warm-up (order reversed every other round). Per round: Triton's best over in-process's best
(saturation) and Triton at concurrency 16 over in-process batch 32; reported as median [min, max].
Triton's statistics give the mean batch it formed at each concurrency.

    .venv/bin/python benchmarks/bench_triton.py [--rounds 5] [--seconds 6]
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
from _common import paired_rounds, running_bench_triton, spread, write_result


def jpeg_images(n: int, size: int = 224) -> list[bytes]:
    from vlserve.toyworld.dataset import sample

    out = []
    for i in range(n):
        img = Image.fromarray(sample("test", i).scene.image).resize((size, size), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", default="open_clip:ViT-B-32?init=random")
    p.add_argument("--seconds", type=float, default=6)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--concurrency", default="1,4,16")
    args = p.parse_args()

    import tritonclient.grpc as grpcclient

    from vlserve.models import Runtime, load_dual_encoder
    from vlserve.serving.repository import RepoOptions, build_repository

    images = jpeg_images(64)
    batches = [int(x) for x in args.batches.split(",")]
    concurrencies = [int(x) for x in args.concurrency.split(",")]
    shipped = RepoOptions()  # what `vlserve repo build` and model_repository/ use
    engine = load_dual_encoder(args.spec, Runtime(device="cpu", precision="fp32", max_batch=shipped.max_batch_size))
    repo = Path(tempfile.mkdtemp(prefix="bench-repo-"))
    build_repository(repo, args.spec, models=("image_encoder",), opts=shipped)
    config = (repo / "image_encoder" / "config.pbtxt").read_text()
    batch_formed: dict[str, list[float]] = {f"concurrency_{c}": [] for c in concurrencies}
    with running_bench_triton(repo) as tri:
        ready_s = tri.ready_s
        clients = [grpcclient.InferenceServerClient(tri.server.grpc_url) for _ in range(max(concurrencies))]

        def in_process(b: int) -> float:
            n, t = 0, time.perf_counter()
            while n < 2 * b or time.perf_counter() - t < args.seconds:
                start = (n // b) % (len(images) // b)
                engine.encode_images(images[start * b:(start + 1) * b])
                n += b
            return n / (time.perf_counter() - t)

        def triton(c: int) -> float:
            done = [0] * c
            stop = time.perf_counter() + args.seconds

            def worker(k: int) -> None:
                i = k
                while time.perf_counter() < stop:
                    inp = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
                    inp.set_data_from_numpy(np.array([[images[i % len(images)]]], dtype=np.object_))
                    clients[k].infer("image_encoder", [inp])
                    done[k] += 1
                    i += 7

            req0, exec0 = tri.counts("image_encoder")
            t = time.perf_counter()
            threads = [threading.Thread(target=worker, args=(k,)) for k in range(c)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            rate = sum(done) / (time.perf_counter() - t)
            req1, exec1 = tri.counts("image_encoder")
            batch_formed[f"concurrency_{c}"].append((req1 - req0) / max(exec1 - exec0, 1))
            return rate

        arms: dict[str, Any] = {}
        for b, c in zip(batches, concurrencies, strict=True):
            arms[f"in_process_batch_{b}"] = lambda b=b: in_process(b)
            arms[f"triton_concurrency_{c}"] = lambda c=c: triton(c)
        per_round = paired_rounds(arms, args.rounds)
    for v in batch_formed.values():
        del v[0]  # the warm-up's
    local = [k for k in per_round if k.startswith("in_process")]
    served = [k for k in per_round if k.startswith("triton")]
    saturation = [max(per_round[k][r] for k in served) / max(per_round[k][r] for k in local)
                  for r in range(args.rounds)]
    ratios = {"triton_saturation_over_best_in_process": spread(saturation)}
    if "triton_concurrency_16" in per_round and "in_process_batch_32" in per_round:
        ratios["triton_c16_over_in_process_b32"] = spread(
            [a / b for a, b in zip(per_round["triton_concurrency_16"], per_round["in_process_batch_32"], strict=True)])
    write_result("triton_throughput", {
        "spec": args.spec, "precision": "fp32", "image": "224x224 JPEG (decode included on both sides)",
        "seconds_per_point": args.seconds, "rounds": args.rounds, "repository_config": config,
        "ready_seconds": round(ready_s, 1), "protocol": "gRPC, one image per request",
        "images_per_s": {k: spread(v, 2) for k, v in per_round.items()},
        "triton_mean_batch_formed": {k: spread(v, 2) for k, v in batch_formed.items()},
        "ratios": ratios,
        "targets": {"triton_saturation_over_best_in_process": ">= 0.9", "triton_c16_over_in_process_b32": ">= 0.8"},
        "met": {k: v["median"] >= {"triton_saturation_over_best_in_process": 0.9,
                                   "triton_c16_over_in_process_b32": 0.8}[k] for k, v in ratios.items()},
    })


if __name__ == "__main__":
    main()
