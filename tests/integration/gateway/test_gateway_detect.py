"""``/v1/detect`` with a detector deployed: the real tritonserver serving the toy encoders and a tiny
random OWL-ViT, the gateway in front. The boxes and scores that come back are the in-process
detector's on the same images and queries (text and example-image queries), several images in one
request; a bad target image is named by its place in the request, and the gateway keeps serving."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from image_files import png
from servers import running_gateway, running_triton

from vlserve.detection.engine import ObjectDetector
from vlserve.models import Runtime, load_detector
from vlserve.serving.repository import build_repository

pytestmark = pytest.mark.integration
QUERIES = ["a red star", "a blue circle", "a square"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def detect_stack(tiny_owl, tmp_path_factory) -> Iterator[httpx.Client]:
    root = tmp_path_factory.mktemp("gateway-detect")
    # no pixel_text here: /v1/segment answers 404 "not deployed"
    build_repository(root / "repo", "toy", models=("image_encoder", "text_encoder", "zero_shot_classifier", "detector"),
                     detector_spec=f"hf:{tiny_owl['owlvit']}")
    (root / "index").mkdir()
    with running_triton(root / "repo", root / "cache", ready_timeout=600) as triton, \
            running_gateway(triton.grpc_url, root / "index", root, {"VLSERVE_MODEL": "toy"}) as gateway, \
            httpx.Client(base_url=gateway.url, timeout=120) as http:
        yield http


@pytest.fixture(scope="module")
def in_process(tiny_owl) -> ObjectDetector:
    return ObjectDetector(load_detector(f"hf:{tiny_owl['owlvit']}", Runtime(device="cpu", precision="fp32")))


def _same(got: list[dict], want: list) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert (g["height"], g["width"]) == (w.height, w.width)
        assert len(g["boxes"]) == len(w.detections) > 0
        for b, d in zip(g["boxes"], w.detections, strict=True):
            assert (b["query"], b["label"]) == (d.query, d.label)
            assert b["score"] == pytest.approx(d.score, abs=1e-5)
            assert np.allclose(b["box_xyxy"], d.box, atol=1e-3)


def test_models_list_the_detect_capability(detect_stack):
    toy = next(m for m in detect_stack.get("/v1/models").json()["data"] if m["id"] == "toy")
    assert "detect" in toy["capabilities"] and "segment" not in toy["capabilities"]


def test_segment_without_pixel_text_is_not_deployed(detect_stack):
    r = detect_stack.post("/v1/segment", json={"images": [b64(png(np.zeros((32, 32, 3), np.uint8)))],
                                               "labels": ["star"]})
    assert r.status_code == 404
    assert r.json() == {"error": {"type": "not_found", "message": "model 'pixel_text' is not deployed"}}


def test_text_queries_over_several_images_give_the_in_process_boxes(detect_stack, in_process, detection_images):
    images = [png(a) for a in detection_images]
    r = detect_stack.post("/v1/detect", json={"model": "toy", "images": [b64(i) for i in images],
                                              "queries": QUERIES, "threshold": 0.0, "nms_iou": 0.5, "top_k": 20})
    assert r.status_code == 200, r.text
    _same(r.json()["results"], in_process.detect(images, QUERIES, threshold=0.0, nms_iou=0.5, top_k=20))


def test_an_example_image_query_over_several_images_gives_the_in_process_boxes(detect_stack, in_process,
                                                                               detection_images):
    images = [png(a) for a in detection_images]
    example = png(np.random.default_rng(4).integers(0, 256, (30, 44, 3), dtype=np.uint8))
    r = detect_stack.post("/v1/detect", json={"model": "toy", "images": [b64(i) for i in images],
                                              "query_images": [b64(example)], "query_boxes": [[2, 3, 20, 25]],
                                              "threshold": 0.0, "top_k": 10})
    assert r.status_code == 200, r.text
    want = in_process.detect(images, query_images=[example], query_boxes=[(2, 3, 20, 25)], threshold=0.0, top_k=10)
    _same(r.json()["results"], want)
    assert all("relative_score" in b for res in r.json()["results"] for b in res["boxes"])


def test_a_corrupt_target_image_is_named_by_its_place_and_the_gateway_keeps_serving(detect_stack,
                                                                                   detection_images):
    good = b64(png(detection_images[0]))
    r = detect_stack.post("/v1/detect", json={"model": "toy", "images": [good, b64(b"not an image at all")],
                                              "queries": QUERIES})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["type"], error.get("param"), error.get("item")) == ("invalid_input", "images", 1), error
    r = detect_stack.post("/v1/detect", json={"model": "toy", "images": [good], "queries": QUERIES})
    assert r.status_code == 200, r.text
