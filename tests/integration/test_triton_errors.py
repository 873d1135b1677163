"""Errors across the real tritonserver: every type in the error table, raised inside a Triton model,
comes back through VLServeClient (HTTP and gRPC) as the same type with its fields; the settings
reach the Triton models (a low VLSERVE_MAX_IMAGE_PIXELS refuses a larger image with INVALID_ARG,
and a config parameter takes precedence over it)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from servers import free_ports, running_triton

from vlserve.errors import ERROR_TABLE, InvalidInput, ModelUnavailable, VLServeError
from vlserve.serving.client import VLServeClient, _call_failed
from vlserve.serving.launcher import TritonServer
from vlserve.serving.repository import RepoOptions, build_repository

pytestmark = pytest.mark.integration
PIXEL_LIMIT = 48 * 48
TESTS = Path(__file__).resolve().parents[1]


def png(h: int, w: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    repo = tmp_path_factory.mktemp("repo")
    build_repository(repo, "toy", models=("image_encoder",))  # limit from VLSERVE_MAX_IMAGE_PIXELS
    build_repository(repo, "toy", prefix="big_", models=("image_encoder",),
                     opts=RepoOptions(parameters={"MAX_IMAGE_PIXELS": str(100 * 100)}))  # the config's own limit
    raising = build_repository(repo, "toy", prefix="raise_", models=("image_encoder",))[0]
    shutil.copy(TESTS / "triton_error_model.py", raising / "1" / "model.py")
    env = {"VLSERVE_MAX_IMAGE_PIXELS": str(PIXEL_LIMIT)}  # the settings the models' stubs read
    with running_triton(repo, tmp_path_factory.mktemp("cache"), env) as server:
        yield server


def url(server: TritonServer, protocol: str) -> str:
    return server.http_url if protocol == "http" else server.grpc_url


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("cls", list(ERROR_TABLE), ids=lambda c: c.__name__)
def test_each_error_type_comes_back_with_its_fields(server, protocol, cls):
    client = VLServeClient(url(server, protocol), protocol, prefix="raise_")
    sent = {"code": cls.code, "message": f"{cls.__name__} raised in the model", "item": 2, "field": "labels"}
    try:
        with pytest.raises(cls) as caught:
            client.embed_images([json.dumps(sent).encode()])
    finally:
        client.close()
    err = caught.value
    assert type(err) is cls and (err.message, err.item, err.field) == (sent["message"], 2, "labels")
    assert str(err) == f"labels 2: {sent['message']}"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_bug_in_a_model_is_an_internal_error_without_internals(server, protocol):
    client = VLServeClient(url(server, protocol), protocol, prefix="raise_")
    try:
        with pytest.raises(VLServeError) as caught:
            client.embed_images([json.dumps({"code": "bug"}).encode()])
    finally:
        client.close()
    assert type(caught.value) is VLServeError and caught.value.message == "internal error"
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_pixel_limit_from_the_environment_applies_under_triton(server, protocol):
    client = VLServeClient(url(server, protocol), protocol)
    try:
        assert client.embed_images([png(40, 40)]).shape == (1, 128)  # under the limit: fine
        with pytest.raises(InvalidInput) as caught:
            client.embed_images([png(64, 80)])
    finally:
        client.close()
    err = caught.value
    assert f"the {PIXEL_LIMIT}-pixel limit" in err.message and (err.item, err.field) == (0, "image")


def test_pixel_limit_is_triton_invalid_arg_naming_the_limit(server):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    c = grpcclient.InferenceServerClient(server.grpc_url)
    inp = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
    inp.set_data_from_numpy(np.array([[png(64, 80)]], dtype=np.object_))
    with pytest.raises(InferenceServerException) as caught:
        c.infer("image_encoder", [inp])
    assert "INVALID_ARG" in str(caught.value.status())
    assert f"declared size 80x64 exceeds the {PIXEL_LIMIT}-pixel limit" in caught.value.message()


def test_config_parameter_takes_precedence_over_the_environment(server):
    client = VLServeClient(server.http_url, "http", prefix="big_")
    try:
        assert client.embed_images([png(64, 80)]).shape == (1, 128)
        with pytest.raises(InvalidInput, match="10000-pixel limit"):
            client.embed_images([png(120, 100)])
    finally:
        client.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_only_an_unreachable_server_is_model_unavailable(protocol):
    (port,) = free_ports(1)
    client = VLServeClient(f"127.0.0.1:{port}", protocol, timeout_s=5)
    with pytest.raises(ModelUnavailable):
        client.embed_texts(["a red circle"])
    assert _call_failed(TypeError("a bug in the caller")) is None  # propagates as itself
