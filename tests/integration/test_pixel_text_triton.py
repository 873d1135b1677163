"""The ``pixel_text`` model served by the real tritonserver: with the stock ``tritonclient``, a toy
scene holding a star and a circle, labels "star, circle", gives a segmentation whose star pixels
match the true star mask (IoU >= 0.6, the embedded DenseCLIP head); vlserve's client gives the
in-process results; every bad request is refused naming its problem and the server keeps serving."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as httpclient
from image_files import png
from servers import running_triton
from tritonclient.utils import InferenceServerException

from vlserve.dense.segmenter import PixelText
from vlserve.dense.service import TOY_HEAD_DIR
from vlserve.errors import InvalidInput, Unsupported
from vlserve.models import load_dual_encoder
from vlserve.serving.client import VLServeClient
from vlserve.serving.repository import RepoOptions, build_repository
from vlserve.toyworld.dataset import composed_scene
from vlserve.toyworld.scene import SHAPES

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_dirs):
    repo = tmp_path_factory.mktemp("repo")
    build_repository(repo, "toy", models=("pixel_text",))  # the embedded head (the toy model's default)
    build_repository(repo, "toy", prefix="plain_", models=("pixel_text",),
                     opts=RepoOptions(parameters={"DENSE_HEAD": "none"}))
    build_repository(repo, f"hf:{tiny_dirs['hf_align']}", prefix="align_", models=("pixel_text",))
    with running_triton(repo, tmp_path_factory.mktemp("cache")) as server:
        yield server


def _stock_request(url: str, image: bytes, labels: list[str], method: str | None = None):
    client = httpclient.InferenceServerClient(url)
    try:
        inputs = [httpclient.InferInput("IMAGE", [1, 1], "BYTES"), httpclient.InferInput("LABELS", [1, len(labels)],
                                                                                       "BYTES")]
        inputs[0].set_data_from_numpy(np.array([[image]], dtype=np.object_))
        inputs[1].set_data_from_numpy(np.array([labels], dtype=np.object_))
        if method is not None:
            inputs.append(httpclient.InferInput("METHOD", [1, 1], "BYTES"))
            inputs[-1].set_data_from_numpy(np.array([[method]], dtype=np.object_))
        return client.infer("pixel_text", inputs)
    finally:
        client.close()


def test_star_and_circle_through_stock_tritonclient(server):
    """20 scenes of a star and a circle in random drawing styles (thin hand-drawn outlines included);
    the star's IoU pooled over them (intersections and unions summed, as mIoU is) is at least 0.6."""
    assert (TOY_HEAD_DIR / "head.json").is_file(), "the embedded DenseCLIP head is missing"
    inter = union = 0
    per_scene = []
    for index in range(20):
        scene = composed_scene([("star", "red"), ("circle", "blue")], index=index, image_size=160)
        result = _stock_request(server.http_url, png(scene.image), ["star", "circle"])
        h, w = result.as_numpy("OUTPUT_SIZE")[0]
        seg = result.as_numpy("SEGMENTATION")[0, :h, :w]
        assert (h, w) == scene.image.shape[:2] and result.as_numpy("METHOD_USED")[0, 0] == b"denseclip"
        truth, star = scene.semantic_mask() == 1 + SHAPES.index("star"), seg == 0
        inter, union = inter + (truth & star).sum(), union + (truth | star).sum()
        per_scene.append(round((truth & star).sum() / (truth | star).sum(), 3))
    assert inter / union >= 0.6, (inter / union, per_scene)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("method", ["maskclip", "vanilla", "denseclip"])
def test_client_equals_in_process(server, protocol, method):
    engine = PixelText(load_dual_encoder("toy"), TOY_HEAD_DIR)
    scenes = [composed_scene([("star", "green"), ("square", "yellow")], index=i, image_size=s)
              for i, s in ((0, 96), (1, 160))]
    images, labels = [png(s.image) for s in scenes], ["star", "square", "circle"]
    client = VLServeClient(server.http_url if protocol == "http" else server.grpc_url, protocol)
    try:
        got = client.segment(images, labels, method=method, output_side=128)
    finally:
        client.close()
    want = engine.segment(images, labels, method, output_side=128)
    for g, e in zip(got, want, strict=True):
        assert g.method == method and g.scores.shape == e.scores.shape
        assert np.abs(g.scores - e.scores).max() <= 2e-3  # FP16 on the wire
        assert (g.segmentation == e.segmentation).mean() >= 0.999


def test_bad_requests_are_refused_and_the_server_keeps_serving(server):
    image = png(composed_scene([("star", "red")], image_size=96).image)
    client = VLServeClient(server.http_url, "http")
    plain = VLServeClient(server.http_url, "http", prefix="plain_")
    align = VLServeClient(server.http_url, "http", prefix="align_")
    try:
        for call, field, match in [
            (lambda: client.segment([image], [f"l{i}" for i in range(10_000)]), "labels", "at most 256"),
            (lambda: client.segment([image], ["star"], method="nope"), "method", "unknown dense method"),
            (lambda: client.segment([image, b"corrupt"], ["star"]), None, "image"),
            (lambda: client.segment([image], ["star"], output_side=100_000), "output_side", "outside"),
        ]:
            with pytest.raises(InvalidInput, match=match) as err:
                call()
            if field:
                assert err.value.field == field
        with pytest.raises(InvalidInput, match="no labels"):
            client.segment([image], [])
        with pytest.raises(Unsupported, match="no DenseCLIP head"):
            plain.segment([image], ["star"], method="denseclip")
        with pytest.raises(Unsupported, match="ALIGN"):
            align.segment([image], ["star"])
        with pytest.raises(InferenceServerException, match=r"(?i)labels"):
            _stock_request(server.http_url, image, [])
        assert plain.segment([image], ["star"])[0].method == "maskclip"
        assert client.segment([image], ["star"])[0].segmentation.shape == (96, 96)
    finally:
        for c in (client, plain, align):
            c.close()


def test_sliding_windows_through_triton_equal_in_process(server):
    engine = PixelText(load_dual_encoder("toy"))
    scene = composed_scene([("star", "green"), ("circle", "yellow")], index=3, image_size=224)
    client = VLServeClient(server.grpc_url, "grpc", prefix="plain_")
    try:
        (got,) = client.segment([png(scene.image)], ["star", "circle"], method="maskclip", stride=48)
    finally:
        client.close()
    (want,) = engine.segment([png(scene.image)], ["star", "circle"], "maskclip", stride=48)
    assert got.scores.shape == (2, 224, 224) and np.abs(got.scores - want.scores).max() <= 2e-3
