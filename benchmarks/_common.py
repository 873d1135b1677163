"""Shared bits for benchmark scripts: machine/version facts and writing results JSON."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def environment() -> dict[str, Any]:
    versions = {}
    for pkg in ("vlserve", "torch", "open-clip-torch", "transformers", "numpy", "faiss-cpu", "tritonclient",
                "nvidia-pytriton"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        threads = torch.get_num_threads()
    except ImportError:
        gpu, threads = None, None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "torch_threads": threads, "gpu": gpu, "versions": versions}


def write_result(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    doc = {"benchmark": name, "command": " ".join([Path(sys.executable).name, *sys.argv]),
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": environment(), **payload}
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))
    return out
