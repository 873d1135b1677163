"""The HTTP gateway under load, on loopback: the real tritonserver (toy model) and the real gateway
process, driven by an asyncio client (aiohttp) in this process.

1. **Mixed load**: ``--requests`` (5,000) requests at concurrency ``--concurrency`` (32), mixed over
   /v1/embeddings (texts, and data-URI images), /v1/classify, /v1/rank, /v1/search (a toy-world index)
   and GET /v1/models; bounded by ``--max-seconds``. Reports per-endpoint p50/p99 latency, the status
   counts, 5xx and dropped connections (both must be 0).
2. **Gateway vs Triton**: the same single-input embedding requests (one text; one 96 px PNG) sent at
   the same concurrency through the gateway (HTTP JSON) and straight to Triton (tritonclient gRPC aio),
   ``--seconds`` per arm, in interleaved paired rounds after a warm-up (``_common.paired_rounds``);
   each arm is also charged its CPU per request by process (client, gateway, Triton), from /proc.
   Then the same for 224 px JPEGs on a model of real size (``--big-spec``, ViT-B-32 with seeded
   random weights, as bench_triton.py), where the model's work, not the transport's, dominates.
   Target: gateway / Triton >= 0.85 (median of the per-round ratios).
3. **Triton goes away**: a steady stream of embedding requests; Triton is killed mid-stream (SIGKILL
   to its process group: a crash), then started again on the same ports 3 s later. Every answer must be a 200 or a
   clean 503 (with Retry-After), none dropped; reports how long until 503s began and until 200s
   resumed after Triton was ready, without touching the gateway.

    nice -n 19 .venv/bin/python benchmarks/bench_gateway.py [--requests 5000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from _common import TRITONSERVER_VERSION, paired_rounds, ratios, spread, write_result
from servers import running_gateway, running_triton

SHAPES = ["circle", "square", "triangle", "star", "cross", "diamond"]
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]


def toy_pngs(n: int) -> list[bytes]:
    from vlserve.toyworld.dataset import composed_scene

    out = []
    for i in range(n):
        scene = composed_scene([(SHAPES[i % 6], COLOURS[(i // 6) % 6])], index=i, image_size=96)
        buf = io.BytesIO()
        Image.fromarray(scene.image).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def jpegs_224(n: int) -> list[bytes]:
    """Toy scenes at 224 px, JPEG: the input size of a real CLIP (as bench_triton.py uses)."""
    out = []
    for png in toy_pngs(n):
        buf = io.BytesIO()
        Image.open(io.BytesIO(png)).convert("RGB").resize((224, 224), Image.Resampling.BICUBIC).save(
            buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def request_mix(images: list[bytes], seed: int = 0) -> list[tuple[str, str, bytes | None]]:
    """(endpoint label, method path, JSON body) templates, weighted as the mix."""
    rng = random.Random(seed)
    b64 = [base64.b64encode(i).decode() for i in images]
    texts = [f"a {c} {s}" for s in SHAPES for c in COLOURS]
    mix: list[tuple[str, str, bytes | None]] = []
    for _ in range(400):
        kind = rng.choices(["embed_text", "embed_image", "classify", "rank", "search", "models"],
                           weights=[35, 15, 15, 10, 20, 5])[0]
        if kind == "embed_text":
            body: dict[str, Any] | None = {"model": "toy", "input": rng.sample(texts, rng.randint(1, 4))}
        elif kind == "embed_image":
            body = {"model": "toy", "input": [f"data:image/png;base64,{rng.choice(b64)}"]}
        elif kind == "classify":
            body = {"images": [rng.choice(b64)], "labels": SHAPES, "top_k": 3}
        elif kind == "rank":
            body = {"image": rng.choice(b64), "texts": rng.sample(texts, 5)}
        elif kind == "search":
            body = {"index": "toyworld", "texts": [rng.choice(texts)], "k": 10}
        else:
            body = None
        path = {"embed_text": "/v1/embeddings", "embed_image": "/v1/embeddings", "classify": "/v1/classify",
                "rank": "/v1/rank", "search": "/v1/search", "models": "/v1/models"}[kind]
        mix.append((kind, path, None if body is None else json.dumps(body).encode()))
    return mix


async def mixed_load(url: str, mix: list[tuple[str, str, bytes | None]], total: int, concurrency: int,
                     max_seconds: float) -> dict[str, Any]:
    import aiohttp

    latencies: dict[str, list[float]] = defaultdict(list)
    statuses: dict[str, Counter[int]] = defaultdict(Counter)
    dropped: Counter[str] = Counter()
    next_i = 0
    deadline = time.monotonic() + max_seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:

        async def worker() -> None:
            nonlocal next_i
            while next_i < total and time.monotonic() < deadline:
                kind, path, body = mix[next_i % len(mix)]
                next_i += 1
                t = time.perf_counter()
                try:
                    if body is None:
                        async with session.get(path) as r:
                            await r.read()
                    else:
                        async with session.post(path, data=body, headers={"Content-Type": "application/json"}) as r:
                            await r.read()
                    statuses[kind][r.status] += 1
                    latencies[kind].append(time.perf_counter() - t)
                except (aiohttp.ClientError, TimeoutError) as e:
                    dropped[type(e).__name__] += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    done = sum(sum(c.values()) for c in statuses.values())
    return {
        "requests": done, "dropped_connections": sum(dropped.values()), "dropped_by_kind": dict(dropped),
        "wall_s": round(wall, 2), "requests_per_s": round(done / wall, 1),
        "server_errors_5xx": sum(n for c in statuses.values() for s, n in c.items() if s >= 500),
        "statuses": {k: {str(s): n for s, n in sorted(c.items())} for k, c in sorted(statuses.items())},
        "latency_ms": {k: {"p50": round(1000 * float(np.percentile(v, 50)), 1),
                           "p99": round(1000 * float(np.percentile(v, 99)), 1), "n": len(v)}
                       for k, v in sorted(latencies.items())},
    }


async def gateway_rate(url: str, bodies: list[bytes], concurrency: int, seconds: float) -> tuple[int, float]:
    import aiohttp

    done = 0
    stop = time.monotonic() + seconds
    async with aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker(k: int) -> None:
            nonlocal done
            i = k
            while time.monotonic() < stop:
                async with session.post("/v1/embeddings", data=bodies[i % len(bodies)],
                                        headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    assert r.status == 200, await r.text()
                done += 1
                i += concurrency

        t = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        return done, time.perf_counter() - t


async def triton_rate(grpc_url: str, model: str, tensor: str, values: list[bytes], concurrency: int,
                      seconds: float) -> tuple[int, float]:
    import tritonclient.grpc.aio as grpcclient

    client = grpcclient.InferenceServerClient(grpc_url)
    done = 0
    stop = time.monotonic() + seconds

    async def worker(k: int) -> None:
        nonlocal done
        i = k
        while time.monotonic() < stop:
            inp = grpcclient.InferInput(tensor, [1, 1], "BYTES")
            inp.set_data_from_numpy(np.array([[values[i % len(values)]]], dtype=np.object_))
            result = await client.infer(model, [inp])
            result.as_numpy("EMBEDDING")
            done += 1
            i += concurrency

    t = time.perf_counter()
    try:
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
    finally:
        await client.close()
    return done, time.perf_counter() - t


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants (Triton's python-backend stubs), from /proc."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


class CpuPerRequest:
    """Arms of the paired rounds, each also charged the CPU it cost per request, by process: this client,
    the gateway, Triton (server and stubs). On shared cores that, not wall time, says what the gateway adds."""

    def __init__(self, gateway_pids: list[int], triton: Any) -> None:
        self.gateway_pids, self.triton = gateway_pids, triton
        self.us: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))

    def snapshot(self) -> dict[str, float]:
        assert self.triton.process is not None
        return {"client": time.process_time(), "gateway": sum(map(process_cpu_s, self.gateway_pids)),
                "triton": process_cpu_s(self.triton.process.pid)}

    def arm(self, name: str, run: Any) -> Any:
        def measured() -> float:
            before = self.snapshot()
            done, seconds = run()
            after = self.snapshot()
            for k in after:
                self.us[name][k].append(1e6 * (after[k] - before[k]) / max(done, 1))
            return done / seconds

        return measured

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, parts in self.us.items():
            medians = {k: round(float(np.median(v[1:] or v)), 1) for k, v in parts.items()}  # [0]: the warm-up
            out[name] = {**medians, "total": round(sum(medians.values()), 1)}
        return out


def kill(triton: Any) -> None:
    """A crash: SIGKILL to Triton's process group (the server and its python-backend stubs)."""
    os.killpg(triton.process.pid, signal.SIGKILL)
    triton.process.wait()


async def outage(url: str, triton: Any, concurrency: int, before_s: float, ready_timeout: float) -> dict[str, Any]:
    """A steady embedding stream while Triton is killed and started again."""
    import aiohttp

    body = json.dumps({"model": "toy", "input": ["a red star"]}).encode()
    events: list[tuple[float, int, str | None]] = []  # (time, status, retry-after)
    dropped: Counter[str] = Counter()
    phase = {"stop": False}
    marks: dict[str, float] = {}
    async with aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=concurrency),
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def worker() -> None:
            while not phase["stop"]:
                try:
                    async with session.post("/v1/embeddings", data=body,
                                            headers={"Content-Type": "application/json"}) as r:
                        await r.read()
                        events.append((time.monotonic(), r.status, r.headers.get("Retry-After")))
                except (aiohttp.ClientError, TimeoutError) as e:
                    dropped[type(e).__name__] += 1
                await asyncio.sleep(0.02)

        async def operator() -> None:
            loop = asyncio.get_running_loop()
            await asyncio.sleep(before_s)
            marks["killed"] = time.monotonic()
            await loop.run_in_executor(None, kill, triton)
            await asyncio.sleep(3)
            marks["start_called"] = time.monotonic()
            await loop.run_in_executor(None, triton.start)
            await loop.run_in_executor(None, triton.wait_ready, ready_timeout)
            marks["ready"] = time.monotonic()
            while not any(t > marks["ready"] and s == 200 for t, s, _ in events):
                if time.monotonic() - marks["ready"] > 60:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(2)
            phase["stop"] = True

        await asyncio.gather(operator(), *(worker() for _ in range(concurrency)))
    statuses = Counter(s for _, s, _ in events)
    first_503 = next((t for t, s, _ in events if s == 503), None)
    first_200_after = next((t for t, s, _ in events if s == 200 and t > marks.get("ready", float("inf"))), None)
    return {
        "requests": len(events), "statuses": {str(s): n for s, n in sorted(statuses.items())},
        "dropped_connections": sum(dropped.values()),
        "other_5xx": sum(n for s, n in statuses.items() if s >= 500 and s != 503),
        "every_503_has_retry_after": all(ra is not None for _, s, ra in events if s == 503),
        "how": "SIGKILL to Triton's process group (server and stubs), 3 s down, then started on the same ports",
        "first_503_after_kill_s": None if first_503 is None else round(first_503 - marks["killed"], 2),
        "triton_restart_to_ready_s": round(marks["ready"] - marks["start_called"], 1),
        "first_200_after_triton_ready_s": None if first_200_after is None else round(first_200_after - marks["ready"],
                                                                                      2),
        "recovered": first_200_after is not None,
    }


def wait_ready(url: str) -> None:
    """Until the gateway has discovered the models and loaded the indexes (it does so in the background)."""
    import urllib.request

    while True:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)


def compare(gateway: Any, triton: Any, model: str, kinds: dict[str, list[bytes]], concurrency: int, seconds: float,
            rounds: int, plain: Any = None) -> dict[str, Any]:
    """Gateway vs direct Triton gRPC on the same single-input embedding requests, in paired rounds.
    ``kinds``: "text" (UTF-8 texts) and/or "image" (encoded images). ``plain``: a second gateway with
    coalescing off (``VLSERVE_EMBED_COALESCE=0``), a third arm: each HTTP request its own Triton request."""
    gateways = [gateway] + ([plain] if plain is not None else [])
    assert all(g.process is not None for g in gateways)
    cpu = CpuPerRequest([g.process.pid for g in gateways], triton)
    arms: dict[str, Any] = {}
    for kind, values in kinds.items():
        if kind == "text":
            inputs = [v.decode() for v in values]
        else:
            inputs = ["data:image/png;base64," + base64.b64encode(v).decode() for v in values]
        bodies = [json.dumps({"model": model, "input": [x]}).encode() for x in inputs]
        triton_model, tensor = ("text_encoder", "TEXT") if kind == "text" else ("image_encoder", "IMAGE")
        arms[f"gateway_{kind}"] = cpu.arm(f"gateway_{kind}", lambda b=bodies: asyncio.run(
            gateway_rate(gateway.url, b, concurrency, seconds)))
        if plain is not None:
            arms[f"gateway_uncoalesced_{kind}"] = cpu.arm(f"gateway_uncoalesced_{kind}", lambda b=bodies: asyncio.run(
                gateway_rate(plain.url, b, concurrency, seconds)))
        arms[f"triton_{kind}"] = cpu.arm(f"triton_{kind}", lambda m=triton_model, t=tensor, v=values: asyncio.run(
            triton_rate(triton.grpc_url, m, t, v, concurrency, seconds)))
    per_round = paired_rounds(arms, rounds)
    return {"concurrency": concurrency, "seconds_per_arm": seconds, "rounds": rounds,
            "requests_per_s": {k: spread(v, 1) for k, v in per_round.items()},
            "ratios": {**{kind: ratios(per_round, f"gateway_{kind}", f"triton_{kind}") for kind in kinds},
                       **({f"{kind}_uncoalesced": ratios(per_round, f"gateway_uncoalesced_{kind}", f"triton_{kind}")
                           for kind in kinds} if plain is not None else {})},
            "cpu_us_per_request": cpu.summary()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--max-seconds", type=float, default=900, help="bound on the mixed-load phase")
    p.add_argument("--seconds", type=float, default=6, help="per arm and round (gateway vs Triton)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--index-images", type=int, default=500)
    p.add_argument("--big-spec", default="open_clip:ViT-B-32?init=random",
                   help="a model of real size for the second comparison ('' to skip)")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # both models load from local files; no hub probe in the stubs

    import tritonclient.grpc as grpcclient

    from vlserve.cli.serve import ensure_toy_index
    from vlserve.serving.repository import build_repository

    work = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    build_repository(work / "repo", "toy")
    ensure_toy_index(work / "index", "toyworld", work / "cache", n=args.index_images)
    images = toy_pngs(36)
    texts = [f"a {c} {s}".encode() for s in SHAPES for c in COLOURS]
    c, s = args.concurrency, args.seconds
    env = {"VLSERVE_MAX_IN_FLIGHT": str(4 * c), "VLSERVE_MODEL": "toy"}
    with running_triton(work / "repo", work / "cache", ready_timeout=900) as triton, \
            running_gateway(triton.grpc_url, work / "index", work, env) as gateway, \
            running_gateway(triton.grpc_url, work / "index", work / "plain", {**env, "VLSERVE_EMBED_COALESCE": "0"}) \
            as plain:
        meta = grpcclient.InferenceServerClient(triton.grpc_url).get_server_metadata()
        TRITONSERVER_VERSION["version"] = meta.version
        wait_ready(gateway.url)
        mixed = asyncio.run(mixed_load(gateway.url, request_mix(images), args.requests, c, args.max_seconds))
        print(json.dumps(mixed, indent=1), flush=True)
        wait_ready(plain.url)
        toy = compare(gateway, triton, "toy", {"text": texts, "image": images}, c, s, args.rounds, plain=plain)
        down = asyncio.run(outage(gateway.url, triton, 8, 3.0, 240))
        print(json.dumps(down, indent=1), flush=True)
    big = None
    if args.big_spec:
        build_repository(work / "big-repo", args.big_spec, models=("image_encoder", "text_encoder"))
        (work / "no-index").mkdir()
        with running_triton(work / "big-repo", work / "cache", ready_timeout=900) as triton, \
                running_gateway(triton.grpc_url, work / "no-index", work, {**env, "VLSERVE_MODEL": args.big_spec}) \
                as gateway:
            wait_ready(gateway.url)
            big = {"model": args.big_spec, **compare(gateway, triton, args.big_spec, {"image": jpegs_224(36)}, c, s,
                                                     args.rounds)}
    met_big = {} if big is None else {"gateway_over_triton_big_image": big["ratios"]["image"]["median"] >= 0.85}
    write_result("gateway_load", {
        "model": "toy (the embedded default), Triton repository as `vlserve repo build` writes it",
        "transport": "client -> gateway: HTTP/1.1 JSON (aiohttp, loopback); gateway -> Triton: gRPC (tritonclient aio)",
        "mixed_load": {"concurrency": c, "requested": args.requests, "index_images": args.index_images, **mixed},
        "gateway_vs_triton": {
            "requests": "one input per request, the same bytes on both sides: a text (36 toy captions) or a 96 px "
                        "PNG (36 toy scenes); for the real-size model a 224 px JPEG (36 toy scenes)",
            "toy": toy, "real_size": big},
        "triton_outage": down,
        "targets": {"mixed_5xx": 0, "mixed_dropped": 0, "gateway_over_triton": ">= 0.85",
                    "outage": "only 200 / 503 with Retry-After, none dropped, 200s again after restart"},
        "met": {"mixed": mixed["server_errors_5xx"] == 0 and mixed["dropped_connections"] == 0
                and mixed["requests"] == args.requests,
                "gateway_over_triton_toy_text": toy["ratios"]["text"]["median"] >= 0.85,
                "gateway_over_triton_toy_image": toy["ratios"]["image"]["median"] >= 0.85, **met_big,
                "outage": down["other_5xx"] == 0 and down["dropped_connections"] == 0 and down["recovered"]
                and down["every_503_has_retry_after"]},
    })


if __name__ == "__main__":
    main()
