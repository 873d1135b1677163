"""The ``detector`` model served by the real tritonserver, one server for the whole module: a tiny
random OWL-ViT (``detector``) and OWLv2 (``v2_detector``) give, through Triton (the stock
tritonclient, and vlserve's client over HTTP and gRPC), the boxes and scores of transformers' own
path; every refused input comes back as INVALID_ARG naming the problem, and the server keeps
serving; a repository without a detector spec has no detector, and the client says so."""

from __future__ import annotations

import math

import numpy as np
import owl_reference
import pytest
from image_files import png
from owl_reference import QUERIES
from servers import running_triton

from vlserve.errors import InvalidInput, NotFound
from vlserve.serving.client import VLServeClient
from vlserve.serving.repository import RepoOptions, build_repository

pytestmark = pytest.mark.integration
PIXEL_LIMIT = 100 * 100
PREFIX = {"owlvit": "", "owlv2": "v2_"}


@pytest.fixture(scope="module")
def server(tiny_owl, tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    opts = RepoOptions(parameters={"MAX_IMAGE_PIXELS": str(PIXEL_LIMIT)})
    for family, prefix in PREFIX.items():
        build_repository(repo, "toy", prefix, models=("detector",), opts=opts,
                         detector_spec=f"hf:{tiny_owl[family]}")
    with running_triton(repo, tmp_path_factory.mktemp("cache")) as server:
        yield server


@pytest.fixture(scope="module")
def reference(tiny_owl):
    return {f: owl_reference.load(tiny_owl[f], f) for f in PREFIX}


def client(server, protocol: str, family: str = "owlvit") -> VLServeClient:
    return VLServeClient(server.http_url if protocol == "http" else server.grpc_url, protocol, prefix=PREFIX[family])


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("family", list(PREFIX))
def test_text_and_image_queries_match_transformers(server, reference, detection_images, family, protocol):
    c = client(server, protocol, family)
    try:
        got = c.detect([png(a) for a in detection_images], QUERIES, threshold=0.0, nms_iou=1.0, top_k=1000)
        query = np.random.default_rng(9).integers(0, 256, (30, 44, 3), dtype=np.uint8)
        by_example = c.detect([png(a) for a in detection_images], query_images=[png(query)], threshold=0.0,
                              nms_iou=0.3, top_k=1000)
    finally:
        c.close()
    want = owl_reference.text_detections(reference[family], detection_images, QUERIES)
    for g, (boxes, scores, labels) in zip(got, want, strict=True):
        assert len(g) == len(scores) == 36
        assert np.abs(g.scores - scores).max() <= 1e-5 and np.abs(g.boxes - boxes).max() <= 1e-3
        assert g.queries.tolist() == labels.tolist() and g.labels == [QUERIES[i] for i in labels]
        assert np.isnan(g.relative_scores).all()
    want_ex, _ = owl_reference.image_guided_detections(reference[family], detection_images, query)
    for g, (boxes, alpha) in zip(by_example, want_ex, strict=True):
        shown = g.relative_scores > 0
        assert shown.sum() == len(alpha) > 0
        assert np.abs(g.relative_scores[shown] - alpha).max() <= 1e-5
        assert np.abs(g.boxes[shown] - boxes).max() <= 1e-3
        assert set(g.labels) == {"image query 0"}


def test_stock_tritonclient_and_options(server, reference, detection_images):
    """A plain tritonclient request (the tensor contract as documented), one row per image."""
    import tritonclient.grpc as grpcclient

    c = grpcclient.InferenceServerClient(server.grpc_url)
    n = len(detection_images)

    def tensor(name, arr, dtype):
        t = grpcclient.InferInput(name, list(arr.shape), dtype)
        t.set_data_from_numpy(arr)
        return t

    inputs = [tensor("IMAGE", np.array([[png(a)] for a in detection_images], dtype=np.object_), "BYTES"),
              tensor("QUERIES", np.array([[q.encode() for q in QUERIES]] * n, dtype=np.object_), "BYTES"),
              tensor("THRESHOLD", np.full((n, 1), 0.0, np.float32), "FP32"),
              tensor("NMS_IOU", np.full((n, 1), 1.0, np.float32), "FP32"),
              tensor("TOP_K", np.full((n, 1), 10, np.int32), "INT32")]
    result = c.infer("detector", inputs)
    want = owl_reference.text_detections(reference["owlvit"], detection_images, QUERIES)
    assert result.as_numpy("COUNT")[:, 0].tolist() == [10] * n  # top-k
    for row, (boxes, scores, labels) in enumerate(want):
        assert np.abs(result.as_numpy("SCORES")[row] - scores[:10]).max() <= 1e-5
        assert np.abs(result.as_numpy("BOXES")[row] - boxes[:10]).max() <= 1e-3
        assert result.as_numpy("QUERY")[row].tolist() == labels[:10].tolist()


def test_a_batch_of_images_equals_single_requests_and_defaults_apply(server, detection_images):
    c = client(server, "grpc")
    try:
        batch = c.detect([png(a) for a in detection_images], QUERIES)  # server defaults: 0.1, NMS 0.3, top 100
        for img, b in zip(detection_images, batch, strict=True):
            (single,) = c.detect([png(img)], QUERIES, threshold=0.1, nms_iou=0.3, top_k=100)
            assert single.queries.tolist() == b.queries.tolist()
            assert np.abs(single.scores - b.scores).max(initial=0) <= 1e-5
            assert (b.scores > 0.1).all()
        (raw,) = c.detect([detection_images[0]], QUERIES)  # a decoded uint8 array (IMAGE_RAW)
        assert np.abs(raw.scores - batch[0].scores).max(initial=0) <= 1e-5
    finally:
        c.close()


BAD_REQUESTS = [
    ("no queries", dict(), "queries", "no queries"),
    ("both kinds", dict(queries=["a star"], query_images=["IMG"]), "queries", "not both"),
    ("empty query string", dict(queries=["a star", ""]), "queries", "empty query"),
    ("too many queries", dict(queries=[f"thing {i}" for i in range(65)]), "queries", "exceed the limit of 64"),
    ("over-long query", dict(queries=["a " * 20 + "star"]), "queries", "owlvit reads at most 16"),
    ("corrupt query image", dict(query_images=[b"GIF89a not really"]), "query_images", "not a decodable image"),
    ("box outside the image", dict(query_images=["IMG"], query_boxes=[(0, 0, 31, 10)]), "query_boxes",
     "not inside the 30x20 query image"),
    ("threshold outside [0, 1]", dict(queries=["a star"], threshold=1.5), "threshold", r"in \[0, 1\]"),
    ("NMS IoU outside [0, 1]", dict(queries=["a star"], nms_iou=-1.0), "nms_iou", r"in \[0, 1\]"),
    ("top_k 0", dict(queries=["a star"], top_k=0), "top_k", "1..1000"),
    ("image over the pixel limit", dict(queries=["a star"], image=(120, 100)), "image",
     f"exceeds the {PIXEL_LIMIT}-pixel limit"),
    ("corrupt target image", dict(queries=["a star"], image=b"\xff\xd8\xff not a jpeg"), "image",
     "not a decodable image"),
]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize(("name", "kwargs", "field", "match"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_are_invalid_arg_naming_the_problem(server, protocol, name, kwargs, field, match):
    kwargs = dict(kwargs)
    image = kwargs.pop("image", (24, 32))
    target = image if isinstance(image, bytes) else png(np.zeros((*image, 3), np.uint8))
    if "query_images" in kwargs:
        kwargs["query_images"] = [png(np.zeros((20, 30, 3), np.uint8)) if q == "IMG" else q
                                  for q in kwargs["query_images"]]
    c = client(server, protocol)
    try:
        with pytest.raises(InvalidInput, match=match) as caught:
            c.detect([target], kwargs.pop("queries", None), **kwargs)
        assert caught.value.field == field
        assert len(c.detect([png(np.zeros((24, 32, 3), np.uint8))], ["a star"], threshold=0.0)[0]) > 0  # still serving
    finally:
        c.close()


def test_invalid_arg_is_triton_code_with_a_readable_message(server):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    c = httpclient.InferenceServerClient(server.http_url)
    image = httpclient.InferInput("IMAGE", [1, 1], "BYTES")
    image.set_data_from_numpy(np.array([[png(np.zeros((20, 30, 3), np.uint8))]], dtype=np.object_))
    threshold = httpclient.InferInput("THRESHOLD", [1, 1], "FP32")
    threshold.set_data_from_numpy(np.array([[2.0]], np.float32))
    queries = httpclient.InferInput("QUERIES", [1, 1], "BYTES")
    queries.set_data_from_numpy(np.array([[b"a star"]], dtype=np.object_))
    with pytest.raises(InferenceServerException) as caught:
        c.infer("detector", [image, threshold, queries])
    assert str(caught.value.status()) == "400"  # Triton's INVALID_ARG over HTTP
    assert "threshold must be a number in [0, 1], got 2.0" in caught.value.message()
    assert c.is_model_ready("detector")


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_detector_that_is_not_deployed_is_not_found(server, protocol):
    c = VLServeClient(server.http_url if protocol == "http" else server.grpc_url, protocol, prefix="absent_")
    try:
        with pytest.raises(NotFound, match=r"'absent_detector' is not deployed.*VLSERVE_DETECTOR_MODEL"):
            c.detect([png(np.zeros((20, 30, 3), np.uint8))], ["a star"])
    finally:
        c.close()


def test_image_query_boxes_travel(server, detection_images):
    """A box per query image; NaN (None) means the whole image."""
    c = client(server, "http", "owlv2")
    query = png(detection_images[0])
    try:
        boxed = c.detect([png(detection_images[2])], query_images=[query, query],
                         query_boxes=[(5.0, 3.0, 40.0, 30.0), None], threshold=0.0, top_k=5)
    finally:
        c.close()
    assert len(boxed[0]) == 5 and set(boxed[0].labels) <= {"image query 0", "image query 1"}
    assert all(0 <= r <= 1 and not math.isnan(r) for r in boxed[0].relative_scores)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_async_client(server, protocol, detection_images):
    import asyncio

    from vlserve.serving.client import AsyncVLServeClient

    url = server.http_url if protocol == "http" else server.grpc_url

    async def go():
        c, absent = AsyncVLServeClient(url, protocol), AsyncVLServeClient(url, protocol, prefix="absent_")
        try:
            found = await asyncio.gather(*(c.detect([png(a)], QUERIES, threshold=0.0, top_k=3)
                                           for a in detection_images))
            with pytest.raises(InvalidInput, match="empty query"):
                await c.detect([png(detection_images[0])], [""])
            with pytest.raises(NotFound, match="not deployed"):
                await absent.detect([png(detection_images[0])], ["a star"])
            return found
        finally:
            await c.close()
            await absent.close()

    sync = client(server, protocol)
    try:
        want = sync.detect([png(a) for a in detection_images], QUERIES, threshold=0.0, top_k=3)
    finally:
        sync.close()
    for (got,), w in zip(asyncio.run(go()), want, strict=True):
        assert got.queries.tolist() == w.queries.tolist() and np.abs(got.scores - w.scores).max() <= 1e-5
