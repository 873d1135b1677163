"""The real tritonserver (from the nvidia-pytriton wheel) serving the toy model, called with the
official tritonclient over HTTP and gRPC; results must equal the in-process engine."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from image_files import png
from servers import free_ports, running_triton

from vlserve.matryoshka import truncate
from vlserve.models import load_dual_encoder
from vlserve.serving.client import VLServeClient
from vlserve.serving.repository import build_repository
from vlserve.toyworld.dataset import single_object
from vlserve.zeroshot.classifier import ZeroShotClassifier

pytestmark = pytest.mark.integration
LABELS = ["circle", "square", "triangle", "star", "cross", "diamond"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    build_repository(repo, "toy")
    with running_triton(repo, tmp_path_factory.mktemp("cache")) as server:
        yield server


@pytest.fixture(scope="module")
def engine():
    return load_dual_encoder("toy")


@pytest.fixture(scope="module")
def images():
    return [png(single_object("test", i).image) for i in range(8)]


@pytest.fixture(params=["http", "grpc"])
def client(request, server):
    url = server.http_url if request.param == "http" else server.grpc_url
    c = VLServeClient(url, request.param)
    yield c
    c.close()


def test_embeddings_equal_in_process_engine(client, engine, images):
    got = client.embed_images(images)
    want = engine.encode_images(images)
    assert got.shape == want.shape and (np.sum(got * want, 1) >= 0.99999).all()
    texts = ["a red star", "a photo of a blue circle", "word " * 200]
    t_got, t_want = client.embed_texts(texts), engine.encode_texts(texts)
    assert (np.sum(t_got * t_want, 1) >= 0.99999).all()
    raw = np.stack([single_object("test", i, world="v1").image for i in range(3)])
    r_got = client.embed_images(list(raw))
    assert (np.sum(r_got * engine.encode_images(list(raw)), 1) >= 0.99999).all()


def test_dimensions_truncate_and_renormalise(client, engine, images):
    got = client.embed_images(images[:2], dimensions=32)
    want = truncate(engine.encode_images(images[:2]), 32)
    assert got.shape == (2, 32) and (np.sum(got * want, 1) >= 0.99999).all()
    assert client.embed_texts(["a star"], dimensions=16).shape == (1, 16)
    from vlserve.errors import InvalidInput

    with pytest.raises(InvalidInput, match=r"dimensions must be an integer in 1\.\.128"):
        client.embed_texts(["a star"], dimensions=999)


def test_classification_equals_engine(client, engine, images):
    clf = ZeroShotClassifier(engine)
    head = clf.labels_head(LABELS)
    for img in images[:3]:
        got = client.classify(img, labels=LABELS, top_k=6)
        want = clf.classify([img], head, top_k=6)[0]
        assert got.labels == [x["label"] for x in want.labels]
        np.testing.assert_allclose(got.scores, [x["score"] for x in want.labels], atol=1e-5)
        assert got.rule == want.rule and not got.multi_label
        assert float(np.dot(got.embedding, engine.encode_images([img])[0])) >= 0.99999
    desc = {"blicket": ["red color", "a star"], "dax": ["blue color", "a circle"]}
    got = client.classify(images[0], descriptors=desc, top_k=2)
    want = clf.classify([images[0]], clf.descriptors_head(desc), top_k=2)[0]
    np.testing.assert_allclose(got.scores, [x["score"] for x in want.labels], atol=1e-5)
    assert [e["descriptor"] for e in got.explanation[got.labels[0]]] == \
        [e["descriptor"] for e in want.labels[0]["explanation"]]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_corrupt_image_fails_alone_among_concurrent_requests(server, protocol, images):
    from vlserve.errors import InvalidInput

    batch = [*images[:7], b"\xff\xd8\xff\xe0 this is not a jpeg"]
    batch.insert(3, batch.pop())  # the bad one in the middle
    url = server.http_url if protocol == "http" else server.grpc_url
    barrier = threading.Barrier(8)

    def call(img):
        client = VLServeClient(url, protocol)  # tritonclient's HTTP client is not thread-safe: one per thread
        barrier.wait()  # eight requests in flight at once, so the dynamic batcher groups them
        try:
            return client.embed_images([img])
        except InvalidInput as e:
            return e
        finally:
            client.close()

    before = _image_encoder_stats(server)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, batch))
    after = _image_encoder_stats(server)
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and isinstance(results[3], InvalidInput)
    assert str(results[3]).startswith("image 0: ")  # the engine's message, naming the item
    assert all(isinstance(r, np.ndarray) and r.shape == (1, 128) for i, r in enumerate(results) if i != 3)
    # Triton's own statistics: the 8 requests ran in fewer model executions than requests, so the bad
    # image shared a dynamic batch with good ones (a python-backend error response still counts as a
    # completed request in Triton's statistics)
    requests = sum(after[k] - before[k] for k in ("success", "fail"))
    executions = after["executions"] - before["executions"]
    assert requests == 8 and 1 <= executions < 8, (before, after)


def _image_encoder_stats(server) -> dict[str, int]:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    try:
        stats = client.get_inference_statistics("image_encoder")["model_stats"][0]
    finally:
        client.close()
    inference = stats["inference_stats"]
    return {"success": int(inference["success"]["count"]), "fail": int(inference["fail"]["count"]),
            "executions": int(stats["execution_count"])}


def test_error_codes_are_triton_invalid_arg(server, images):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    c = grpcclient.InferenceServerClient(server.grpc_url)
    arr = np.array([[b"garbage"]], dtype=np.object_)
    inp = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
    inp.set_data_from_numpy(arr)
    with pytest.raises(InferenceServerException) as e:
        c.infer("image_encoder", [inp])
    assert "INVALID_ARG" in str(e.value.status())


def test_health_ready_and_metrics(server):
    import tritonclient.http as httpclient

    c = httpclient.InferenceServerClient(server.http_url)
    assert c.is_server_live() and c.is_server_ready()
    for m in ("image_encoder", "text_encoder", "zero_shot_classifier"):
        assert c.is_model_ready(m)
    assert not c.is_model_ready("detector")  # slots not yet filled are absent, not stubs
    body = urllib.request.urlopen(f"http://127.0.0.1:{server.ports.metrics}/metrics", timeout=10).read().decode()
    assert "nv_inference_request_success" in body


def test_serve_command_starts_and_stops_cleanly(tmp_path):
    """`vlserve serve` starts Triton and the HTTP gateway, prints both URLs, and SIGTERM stops both."""
    http, grpc, metrics, gateway = free_ports(4)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLSERVE_CACHE_DIR": str(tmp_path),
           "VLSERVE_INDEX_DIR": str(tmp_path / "index")}
    proc = subprocess.Popen([sys.executable, "-m", "vlserve", "serve", "--model", "toy", "--http-port", str(http),
                             "--grpc-port", str(grpc), "--metrics-port", str(metrics), "--gateway-port", str(gateway)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        status = json.loads(line)
        assert status["status"] == "ready" and status["http"] == f"http://127.0.0.1:{http}"
        assert status["gateway"] == f"http://127.0.0.1:{gateway}"
        assert VLServeClient(f"127.0.0.1:{http}").embed_texts(["a star"]).shape == (1, 128)
        with urllib.request.urlopen(f"http://127.0.0.1:{gateway}/healthz", timeout=10) as r:
            assert json.loads(r.read()) == {"status": "ok"}
        t0 = time.time()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert time.time() - t0 < 60
        for port in (http, gateway):
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=2)
    finally:
        proc.kill()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_async_client(server, protocol, engine, images):
    import asyncio

    from vlserve.errors import InvalidInput
    from vlserve.serving.client import AsyncVLServeClient

    async def go():
        c = AsyncVLServeClient(server.http_url if protocol == "http" else server.grpc_url, protocol)
        try:
            emb = await asyncio.gather(*(c.embed_images([img]) for img in images[:4]))
            text = await c.embed_texts(["a red star"], dimensions=64)
            result = await c.classify(images[0], labels=LABELS, top_k=1)
            with pytest.raises(InvalidInput):
                await c.embed_images([b"not an image"])
            return np.concatenate(emb), text, result
        finally:
            await c.close()

    emb, text, result = asyncio.run(go())
    assert (np.sum(emb * engine.encode_images(images[:4]), 1) >= 0.99999).all()
    assert text.shape == (1, 64) and len(result.labels) == 1
