"""Triton goes away under a running gateway: clean 503s (with Retry-After) while it is down, index
lookups by id still answered, and 200s again once Triton is back, without touching the gateway.
(Runs last in this package: it restarts the shared Triton.)"""

from __future__ import annotations

import time

import pytest

from .gateway_stack import SHAPES, Stack, b64, toy_image

pytestmark = pytest.mark.integration


def test_triton_down_answers_503_then_recovers_by_itself(stack: Stack) -> None:
    image = b64(toy_image("star", "red"))
    some_id = stack.post("/v1/search", {"index": "toyworld", "texts": ["a red star"], "k": 1}).json()[
        "results"][0]["hits"][0]["id"]
    stack.triton.stop()
    for path, body in [("/v1/embeddings", {"model": "toy", "input": "a red star"}),
                       ("/v1/classify", {"images": [image], "labels": SHAPES}),
                       ("/v1/search", {"index": "toyworld", "texts": ["a red star"]})]:
        r = stack.post(path, body)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["type"] == "model_unavailable" and r.headers["Retry-After"] == "1"
    by_id = stack.post("/v1/search", {"index": "toyworld", "ids": [some_id], "k": 1})  # FAISS lives in the gateway
    assert by_id.status_code == 200 and by_id.json()["results"][0]["hits"][0]["id"] == some_id
    deadline = time.monotonic() + 10
    while stack.http.get("/readyz").status_code != 503:
        assert time.monotonic() < deadline, "readyz still says ready with Triton down"
        time.sleep(0.5)
    assert stack.http.get("/readyz").json()["triton"] is False
    assert stack.http.get("/healthz").status_code == 200

    stack.triton.start()
    stack.triton.wait_ready(600)
    t0 = time.monotonic()
    while (r := stack.post("/v1/embeddings", {"model": "toy", "input": "a red star"})).status_code != 200:
        assert r.status_code == 503, r.text
        assert time.monotonic() - t0 < 30, "the gateway did not recover within 30 s of Triton being ready"
        time.sleep(0.5)
    assert stack.post("/v1/classify", {"images": [image], "labels": SHAPES}).json()["results"][0]["labels"][0][
        "label"] == "star"
    deadline = time.monotonic() + 15
    while stack.http.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.5)
