"""In-process encoder throughput vs the same model behind Triton with dynamic batching.

ViT-B-32-sized open_clip model with random weights, 224 px JPEG inputs (decode included on both
sides). In-process: ``encode_images`` at batch 1/8/32. Triton: single-image gRPC requests from
1/4/16 concurrent client threads (the client shares this machine's cores with the server).

    .venv/bin/python benchmarks/bench_triton.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_result  # noqa: E402


def jpeg_images(n: int, size: int = 224) -> list[bytes]:
    from vlserve.toyworld.dataset import sample

    out = []
    for i in range(n):
        img = Image.fromarray(sample("test", i).scene.image).resize((size, size), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def in_process(spec: str, images: list[bytes], batches: list[int], seconds: float) -> dict[str, float]:
    from vlserve.models import Runtime, load_dual_encoder

    engine = load_dual_encoder(spec, Runtime(max_batch=max(batches)))
    out = {}
    for b in batches:
        engine.encode_images(images[:b])  # warm-up
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            start = (n // b) % (len(images) // b)
            engine.encode_images(images[start * b:(start + 1) * b])
            n += b
        out[f"batch_{b}"] = round(n / (time.perf_counter() - t0), 2)
        print(f"in-process batch {b}: {out[f'batch_{b}']} img/s", flush=True)
    return out


def metric(url: str, name: str, model: str) -> float:
    body = urllib.request.urlopen(url, timeout=10).read().decode()
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name + "{") and f'model="{model}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def triton(spec: str, images: list[bytes], concurrencies: list[int], seconds: float) -> dict[str, object]:
    import tritonclient.grpc as grpcclient

    from vlserve.serving.launcher import Ports, TritonServer, free_ports
    from vlserve.serving.repository import RepoOptions, build_repository

    repo = Path(tempfile.mkdtemp(prefix="bench-repo-"))
    build_repository(repo, spec, models=("image_encoder",), opts=RepoOptions(max_batch_size=32,
                                                                             preferred_batch_sizes=(8, 16, 32)))
    server = TritonServer(repo, Ports(*free_ports(3)), cache_dir=Path(tempfile.mkdtemp(prefix="bench-cache-"))).start()
    metrics_url = f"http://127.0.0.1:{server.ports.metrics}/metrics"
    results: dict[str, object] = {}
    try:
        t0 = time.perf_counter()
        server.wait_ready(900)
        results["ready_seconds"] = round(time.perf_counter() - t0, 1)

        def worker(stop: float, counter: list[int], k: int) -> None:
            client = grpcclient.InferenceServerClient(server.grpc_url)
            i = k
            while time.perf_counter() < stop:
                arr = np.array([[images[i % len(images)]]], dtype=np.object_)
                inp = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
                inp.set_data_from_numpy(arr)
                client.infer("image_encoder", [inp])
                counter[k] += 1
                i += 7

        warm = [0] * 4
        threads = [threading.Thread(target=worker, args=(time.perf_counter() + 5, warm, k)) for k in range(4)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        for c in concurrencies:
            counts = [0] * c
            req0 = metric(metrics_url, "nv_inference_count", "image_encoder")
            exec0 = metric(metrics_url, "nv_inference_exec_count", "image_encoder")
            start = time.perf_counter()
            threads = [threading.Thread(target=worker, args=(start + seconds, counts, k)) for k in range(c)]
            [t.start() for t in threads]
            [t.join() for t in threads]
            elapsed = time.perf_counter() - start
            reqs = metric(metrics_url, "nv_inference_count", "image_encoder") - req0
            execs = metric(metrics_url, "nv_inference_exec_count", "image_encoder") - exec0
            results[f"concurrency_{c}"] = {"images_per_s": round(sum(counts) / elapsed, 2),
                                           "mean_server_batch": round(reqs / max(execs, 1), 2)}
            print(f"triton concurrency {c}: {results[f'concurrency_{c}']}", flush=True)
    finally:
        server.stop()
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--spec", default="open_clip:ViT-B-32?init=random")
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--concurrency", default="1,4,16")
    args = p.parse_args()
    images = jpeg_images(64)
    batches = [int(x) for x in args.batches.split(",")]
    conc = [int(x) for x in args.concurrency.split(",")]
    local = in_process(args.spec, images, batches, args.seconds)
    served = triton(args.spec, images, conc, args.seconds)
    best_local = max(local.values())
    per_c = {k: v["images_per_s"] for k, v in served.items() if isinstance(v, dict)}
    ratios = {"triton_saturation_over_best_in_process": round(max(per_c.values()) / best_local, 3)}
    if "concurrency_16" in per_c and "batch_32" in local:
        ratios["triton_c16_over_in_process_b32"] = round(per_c["concurrency_16"] / local["batch_32"], 3)
    write_result("triton_throughput", {
        "spec": args.spec, "seconds_per_point": args.seconds, "image": "224x224 JPEG (decode included)",
        "in_process_images_per_s": local, "triton_grpc_single_image_requests": served, "ratios": ratios,
        "targets": {"triton_saturation_over_best_in_process": ">= 0.9", "triton_c16_over_in_process_b32": ">= 0.8"},
    })


if __name__ == "__main__":
    main()
