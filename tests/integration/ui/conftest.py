"""One live stack for the UI tests: a real tritonserver serving the toy model, the gateway (API keys on)
with a toy-world index, and the web UI in its own process holding the key server-side. No mocks."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import free_ports, running, running_gateway, running_triton

from vlserve.cli.serve import ensure_toy_index
from vlserve.serving.launcher import UIServer
from vlserve.serving.repository import build_repository

KEY = "ui-test-key"
INDEX_IMAGES = 200


@dataclass
class UIStack:
    ui_url: str
    gateway_url: str
    index_dir: Path
    truth: dict[str, list[dict[str, Any]]]  # toy index image file name -> its objects
    examples: Path


@pytest.fixture(scope="package")
def ui_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UIStack]:
    root = tmp_path_factory.mktemp("ui-stack")
    build_repository(root / "repo", "toy")
    index_dir = root / "index"
    ensure_toy_index(index_dir, "toyworld", root / "cache", n=INDEX_IMAGES)
    labels = json.loads((root / "cache" / f"toyworld-test-{INDEX_IMAGES}" / "labels.json").read_text())
    truth = {Path(name).name: entry["objects"] for name, entry in labels["images"].items()}
    env = {"VLSERVE_API_KEYS": KEY, "VLSERVE_MODEL": "toy", "VLSERVE_CACHE_DIR": str(root / "cache")}
    with running_triton(root / "repo", root / "cache", ready_timeout=600) as triton, \
            running_gateway(triton.grpc_url, index_dir, root, env) as gateway:
        deadline = time.monotonic() + 120
        headers = {"Authorization": f"Bearer {KEY}"}
        while httpx.get(f"{gateway.url}/readyz", headers=headers).status_code != 200:
            assert time.monotonic() < deadline, "gateway not ready"
            time.sleep(0.5)
        ui = UIServer(free_ports(1)[0], gateway.url, index_dir=index_dir, log_file=root / "ui.log", env=env)
        with running(ui, 180):
            yield UIStack(ui.url, gateway.url, index_dir, truth, root / "cache" / "ui-examples")
