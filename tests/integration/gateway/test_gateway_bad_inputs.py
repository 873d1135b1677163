"""Bad input, each answered by a documented 4xx whose message names the problem, and the gateway still
serving after every one (docs/errors.md has the statuses)."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import httpx
import pytest
from PIL import Image

from .gateway_stack import KEYS, MAX_BODY, MAX_IMAGE, SHAPES, Stack, b64, data_uri, toy_image

pytestmark = pytest.mark.integration


def jpeg(truncate: bool = False) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(toy_image("star", "red"))).convert("RGB").save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    return data[: len(data) // 2] if truncate else data


def png_bomb(side: int = 20_000) -> bytes:
    """A real PNG that declares side x side pixels (1-bit, all zero): ~50 kB on disk, 400 Mpx decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def classify(images: list[str]) -> dict[str, Any]:
    return {"images": images, "labels": SHAPES}


def embeddings(inp: Any, **kw: Any) -> dict[str, Any]:
    return {"model": "toy", "input": inp, **kw}


CASES: list[tuple[str, str, Any, int, str, str]] = [
    # (case, route, JSON body, status, error type, message fragment)
    ("invalid base64", "/v1/classify", classify(["!!not-base64@@"]), 400, "invalid_input",
     "images 0: not valid base64"),
    ("a non-image", "/v1/classify", classify([b64(toy_image("star", "red")), b64(b"hello, I am a text file")]),
     400, "invalid_input", "images 1: not a decodable image"),
    ("a truncated JPEG", "/v1/classify", classify([b64(jpeg(truncate=True))]), 400, "invalid_input",
     "images 0: corrupt or truncated JPEG"),
    ("a 0-byte image", "/v1/embeddings", embeddings(["a red star", "data:image/png;base64,"]), 400, "invalid_input",
     "input 1: empty image (0 bytes)"),
    ("a 20k x 20k PNG bomb", "/v1/classify", classify([b64(png_bomb())]), 400, "invalid_input",
     "images 0: declared size exceeds the pixel limit"),
    ("10k labels", "/v1/classify", {"images": [b64(jpeg())], "labels": [f"label {i}" for i in range(10_000)]},
     400, "invalid_input", "10000 labels are over the limit of 1000 per request (VLSERVE_MAX_LABELS_PER_REQUEST)"),
    ("an empty input list", "/v1/embeddings", embeddings([]), 400, "invalid_input", "input is empty"),
    ("an empty string", "/v1/embeddings", embeddings(""), 400, "invalid_input", "input 0: empty text"),
    ("a 1 MB text", "/v1/embeddings", embeddings("word " * 200_000), 400, "invalid_input",
     "input 0: text of 1000000 characters is over the limit of 4096 (VLSERVE_MAX_TEXT_CHARS)"),
    ("token ids", "/v1/embeddings", embeddings([1, 2, 3]), 422, "unsupported", "token-id input is not supported"),
    ("an unknown model", "/v1/embeddings", {"model": "nope", "input": "a red star"}, 404, "not_found",
     "model 'nope' is not deployed; deployed: toy"),
    ("an unknown index", "/v1/search", {"index": "nope", "texts": ["a red star"]}, 404, "not_found",
     "index 'nope' not found; indexes: other, toyworld"),
    ("an index of another model", "/v1/search", {"index": "other", "texts": ["a red star"]}, 400, "model_mismatch",
     "index 'other' was built with model 'open_clip:local-dir:"),
    ("an index of another model, named", "/v1/search", {"index": "other", "texts": ["a red star"], "model": "toy"},
     400, "model_mismatch", "embeddings of different models are not comparable"),
    ("dimensions not served", "/v1/embeddings", embeddings("a red star", dimensions=100), 400, "invalid_input",
     "dimensions 100 is not served by model 'toy': use one of 16, 32, 64, 128"),
    ("k=0", "/v1/search", {"index": "toyworld", "texts": ["a red star"], "k": 0}, 400, "invalid_input",
     "k: Input should be greater than or equal to 1"),
    ("k=10^6", "/v1/search", {"index": "toyworld", "texts": ["a red star"], "k": 10**6}, 400, "invalid_input",
     "k: Input should be less than or equal to 10000"),
    ("k over the deployment's limit", "/v1/search", {"index": "toyworld", "texts": ["a red star"], "k": 2000}, 400,
     "invalid_input", "k=2000 is over the limit of 1000 (VLSERVE_MAX_K)"),
    ("a URL while URL fetching is off", "/v1/classify", classify(["https://images.example.com/cat.jpg"]), 400,
     "invalid_input", "images 0: image URLs are not fetched by this deployment (VLSERVE_URL_FETCH is off)"),
    ("an embedding of the wrong width", "/v1/search", {"index": "toyworld", "embeddings": [[0.1] * 32]}, 400,
     "model_mismatch", "query embedding has 32 dimensions; index 'toyworld' holds 128-dimensional"),
    ("two kinds of query", "/v1/search", {"index": "toyworld", "texts": ["a"], "ids": [1]}, 400, "invalid_input",
     "give exactly one of texts, images, embeddings, ids"),
    ("a missing field", "/v1/classify", {"labels": SHAPES}, 400, "invalid_input", "images is required"),
]


@pytest.mark.parametrize(("case", "route", "body", "status", "kind", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_json_input(stack: Stack, case: str, route: str, body: Any, status: int, kind: str, message: str) -> None:
    r = stack.post(route, body)
    assert (r.status_code, r.json()["error"]["type"]) == (status, kind), r.text
    assert message in r.json()["error"]["message"], r.text
    assert stack.embed(["still serving"]).shape == (1, 128)


RAW_CASES: list[tuple[str, dict[str, str], bytes, int, str, str]] = [
    ("wrong content type", {"Content-Type": "text/plain"}, b'{"model": "toy", "input": "x"}', 415,
     "unsupported_media_type", "content type 'text/plain' is not accepted here: send application/json"),
    ("no content type", {}, b'{"model": "toy", "input": "x"}', 415, "unsupported_media_type", "'(none)'"),
    ("malformed JSON", {"Content-Type": "application/json"}, b'{"model": "toy", "input": ', 400, "invalid_input",
     "malformed JSON body"),
    ("an oversized body", {"Content-Type": "application/json"}, b" " * (MAX_BODY + 1), 413, "payload_too_large",
     f"over the limit of {MAX_BODY} (VLSERVE_MAX_BODY_BYTES)"),
]


@pytest.mark.parametrize(("case", "headers", "content", "status", "kind", "message"), RAW_CASES,
                         ids=[c[0] for c in RAW_CASES])
def test_bad_raw_body(stack: Stack, case: str, headers: dict[str, str], content: bytes, status: int, kind: str,
                      message: str) -> None:
    r = stack.http.post("/v1/embeddings", content=content, headers=headers)
    assert (r.status_code, r.json()["error"]["type"]) == (status, kind), r.text
    assert message in r.json()["error"]["message"], r.text
    assert stack.embed(["still serving"]).shape == (1, 128)


def test_chunked_body_over_the_limit_is_refused(stack: Stack) -> None:
    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(5):
            yield b" " * (MAX_BODY // 4)

    r = stack.http.post("/v1/embeddings", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["type"] == "payload_too_large", r.text


@pytest.mark.parametrize(("case", "authorization", "message"), [
    ("a wrong API key", "Bearer not-a-key", "invalid API key"),
    ("no API key", None, "missing API key"),
])
def test_keys_are_required(stack: Stack, case: str, authorization: str | None, message: str) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    r = httpx.post(f"{stack.url}/v1/embeddings", json=embeddings("a red star"), headers=headers, timeout=30)
    assert r.status_code == 401 and r.json()["error"] == {"type": "unauthorized", "message": message + (
        ": send the header 'Authorization: Bearer <key>'" if authorization is None else "")}
    assert httpx.post(f"{stack.url}/v1/embeddings", json=embeddings("a red star"), timeout=30,
                      headers={"Authorization": f"Bearer {KEYS[0]}"}).status_code == 200


def test_an_image_over_the_byte_limit(stack: Stack) -> None:
    big = data_uri(b"\x00" * (MAX_IMAGE + 1))  # under the body limit, over the image limit
    r = stack.post("/v1/embeddings", embeddings(["a red star", big]))
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert message.startswith("input 1: image of ") and message.endswith(
        f"bytes is over the limit of {MAX_IMAGE} bytes (VLSERVE_MAX_IMAGE_BYTES)")


def test_multipart_upload_errors_name_the_file(stack: Stack) -> None:
    r = stack.http.post("/v1/classify", files=[("image", ("ok.png", toy_image("star", "red"), "image/png")),
                                               ("image", ("empty.png", b"", "image/png"))],
                        data={"labels": "star,circle"})
    assert r.status_code == 400 and r.json()["error"]["message"] == "images 1: empty image (0 bytes)", r.text


def test_malformed_multipart_is_a_400(stack: Stack) -> None:
    r = stack.http.post("/v1/classify", content=b"--nope\r\nno headers here",
                        headers={"Content-Type": "multipart/form-data; boundary=XYZ"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_input", r.text
    assert stack.embed(["still serving"]).shape == (1, 128)
