"""Shared bits for benchmark scripts: machine/version facts, interleaved paired rounds, and writing
results JSON (command, date, machine, versions, git commit, raw per-round numbers).

On a shared machine only interleaved rounds give a ratio that holds: after a warm-up of every arm,
each round runs every arm once (the order alternates round by round, so drift hits both alike), and
a ratio is reported as the median and [min, max] of its per-round values."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlserve import provenance

RESULTS = Path(__file__).parent / "results"


TRITONSERVER_VERSION: dict[str, str] = {}  # filled by a benchmark that started one (server metadata)


@dataclass
class BenchTriton:
    server: Any  # vlserve.serving.launcher.TritonServer
    ready_s: float  # start to ready
    stats: Any  # a tritonclient gRPC client for statistics

    def counts(self, model: str) -> tuple[int, int]:
        """(inferences, executions) of ``model`` so far: their ratio is the mean batch Triton formed."""
        s = self.stats.get_inference_statistics(model).model_stats[0]
        return int(s.inference_count), int(s.execution_count)


@contextmanager
def running_bench_triton(repo: Path) -> Iterator[BenchTriton]:
    """Triton on free ports over ``repo``, started and stopped by tests/servers.py's ``running``; its
    start-to-ready time measured and its version recorded for ``environment``."""
    import tritonclient.grpc as grpcclient
    from servers import free_ports, running

    from vlserve.serving.launcher import Ports, TritonServer

    server = TritonServer(repo, Ports(*free_ports(3)), cache_dir=Path(tempfile.mkdtemp(prefix="bench-cache-")))
    t0 = time.perf_counter()
    with running(server, 900):
        stats = grpcclient.InferenceServerClient(server.grpc_url)
        TRITONSERVER_VERSION["version"] = stats.get_server_metadata().version
        yield BenchTriton(server, time.perf_counter() - t0, stats)


def environment() -> dict[str, Any]:
    versions: dict[str, str | None] = dict(provenance.versions())
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        threads = torch.get_num_threads()
    except ImportError:
        gpu, threads = None, None
    versions["tritonserver"] = TRITONSERVER_VERSION.get("version")
    return {"python": sys.version.split()[0], "platform": platform.platform(), "cpu_model": provenance.cpu_model(),
            "cpu_count": os.cpu_count(), "torch_threads": threads, "gpu": gpu,
            "loadavg_1m": round(os.getloadavg()[0], 2), "versions": versions}


def spread(values: list[float], digits: int = 3) -> dict[str, Any]:
    """Median and [min, max] of per-round values, with the raw values."""
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "rounds": [round(v, digits + 1) for v in values]}


def paired_rounds(arms: dict[str, Callable[[], float]], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Run every arm ``warmup`` times, then ``rounds`` interleaved rounds (A, B, ... then ..., B, A);
    each arm returns its measurement (a rate or a time). Returns arm -> per-round values."""
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    for _ in range(warmup):
        for fn in arms.values():
            fn()
    out: dict[str, list[float]] = {name: [] for name in arms}
    order = list(arms)
    for r in range(rounds):
        for name in (order if r % 2 == 0 else order[::-1]):
            out[name].append(arms[name]())
            print(f"round {r + 1}/{rounds} {name}: {out[name][-1]:.4g}", flush=True)
    return out


def ratios(per_round: dict[str, list[float]], num: str, den: str) -> dict[str, Any]:
    """The per-round ratio num/den as median [min, max]."""
    return spread([a / b for a, b in zip(per_round[num], per_round[den], strict=True)])


def write_result(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    facts = provenance.provenance()
    doc = {"benchmark": name, "command": facts["command"], "date": facts["date"], "git_commit": facts["git_commit"],
           "machine": environment(), "conditions": os.environ.get("BENCH_NOTE"), **payload}
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))
    return out
