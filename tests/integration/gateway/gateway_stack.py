"""The live stack the gateway tests share: a real tritonserver serving the toy model, two indexes (60
toy-world scenes built by the toy model, and 4 images indexed by another model), and the gateway in
its own process, with API keys set. No mocks."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import tiny_models
from PIL import Image
from servers import running_gateway, running_triton

from vlserve.cli.serve import ensure_toy_index
from vlserve.ingest.pipeline import BuildOptions, build
from vlserve.serving.launcher import GatewayServer, TritonServer
from vlserve.serving.repository import build_repository
from vlserve.toyworld.dataset import composed_scene

KEYS = ("test-key-1", "test-key-2")
MAX_BODY = 4 << 20
MAX_IMAGE = 1 << 20
MAX_IN_FLIGHT = 8
SHAPES = ["circle", "square", "triangle", "star", "cross", "diamond"]


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def data_uri(data: bytes, media: str = "image/png") -> str:
    return f"data:{media};base64,{b64(data)}"


def toy_image(shape: str, colour: str, index: int = 0) -> bytes:
    return png(composed_scene([(shape, colour)], index=index, image_size=96).image)


@dataclass
class Stack:
    url: str
    triton: TritonServer
    gateway: GatewayServer
    index_dir: Path
    http: httpx.Client

    def post(self, path: str, body: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
        return self.http.post(path, json=body, **kw) if body is not None else self.http.post(path, **kw)

    def embed(self, texts: list[str], **kw: Any) -> np.ndarray:
        r = self.post("/v1/embeddings", {"model": "toy", "input": texts, **kw})
        assert r.status_code == 200, r.text
        return np.array([d["embedding"] for d in r.json()["data"]], np.float32)


@contextmanager
def live_stack(root: Path, env: dict[str, str] | None = None) -> Iterator[Stack]:
    build_repository(root / "repo", "toy")
    index_dir = root / "index"
    ensure_toy_index(index_dir, "toyworld", root / "cache", n=60)
    other = tiny_models.save_open_clip(root / "other-model", tiny_models.OPEN_CLIP_TINY)
    (root / "other-images").mkdir()
    for i, (shape, colour) in enumerate([("star", "red"), ("circle", "blue"), ("square", "green"), ("cross", "red")]):
        (root / "other-images" / f"{i}.png").write_bytes(toy_image(shape, colour))
    build(index_dir, "other", [str(root / "other-images")], BuildOptions(progress=False, workers=0),
          model=f"open_clip:local-dir:{other}")
    env = {"VLSERVE_API_KEYS": ",".join(KEYS), "VLSERVE_MAX_IN_FLIGHT": str(MAX_IN_FLIGHT),
           "VLSERVE_MAX_BODY_BYTES": str(MAX_BODY), "VLSERVE_MAX_IMAGE_BYTES": str(MAX_IMAGE), "VLSERVE_MODEL": "toy",
           **(env or {})}
    with running_triton(root / "repo", root / "cache", ready_timeout=600) as triton, \
            running_gateway(triton.grpc_url, index_dir, root, env) as gateway:
        http = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {KEYS[0]}"}, timeout=120)
        deadline = time.monotonic() + 120
        while http.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, f"gateway not ready: {http.get('/readyz').text}"
            time.sleep(0.5)
        yield Stack(gateway.url, triton, gateway, index_dir, http)
        http.close()
