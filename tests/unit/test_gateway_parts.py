"""The gateway's parts that need no server: image inputs, URL fences, API keys, error bodies, settings,
the committed OpenAPI document (test_api.py checks that the gateway imports no torch)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from vlserve.api.schemas import TINY_PNG, ClassifyRequest, EmbeddingsRequest
from vlserve.errors import InvalidInput, Unauthorized
from vlserve.gateway.errors import error_body, invalid_request
from vlserve.gateway.fetch import UrlFetcher
from vlserve.gateway.guard import check_api_key
from vlserve.gateway.images import decode_base64_image, is_image_ref
from vlserve.gateway.registry import DeployedModel
from vlserve.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PNG = base64.b64decode(TINY_PNG)


def test_committed_openapi_is_what_the_app_serves() -> None:
    from vlserve.gateway.app import create_app

    live = json.loads(json.dumps(create_app(Settings()).openapi()))
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert live == committed, "docs/openapi.json drifted: run `.venv/bin/vlserve openapi --out docs/openapi.json`"


@pytest.mark.parametrize("ref", [TINY_PNG, "data:image/png;base64," + TINY_PNG, base64.encodebytes(PNG).decode(),
                                 base64.urlsafe_b64encode(PNG).decode()])
def test_base64_and_data_uris_decode(ref: str) -> None:
    assert decode_base64_image(ref, 1 << 20) == PNG


@pytest.mark.parametrize(("ref", "message"), [
    ("!!not base64@@", "not valid base64"),
    ("data:image/png;base64,", "empty image (0 bytes)"),
    ("data:text/plain;base64,aGk=", "not an image type"),
    ("data:image/png,rawbytes", "must be base64"),
    ("data:image/png;base64", "malformed data URI"),
    (base64.b64encode(b"x" * 2000).decode(), "image of about 2000 bytes is over the limit of 1000 bytes"),
])
def test_bad_image_references_say_what_is_wrong(ref: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        decode_base64_image(ref, 1000)


def test_image_references_in_openai_input() -> None:
    assert is_image_ref("data:image/png;base64,AAAA") and is_image_ref("https://example.com/a.jpg")
    assert not is_image_ref("a red star") and not is_image_ref("iVBORw0KGgo")  # bare base64 is a text there


def test_url_fence_refuses_before_any_connection() -> None:
    fetcher = UrlFetcher(["images.example.com", "127.0.0.1", "localhost"], 1000, 1.0)
    assert fetcher.check("https://images.example.com/a.jpg") == "images.example.com"
    for url, message in [("https://evil.example.com/a.jpg", "not on the allow-list"),
                         ("ftp://images.example.com/a.jpg", "only http"),
                         ("https://user:pw@images.example.com/a.jpg", "credentials"),
                         ("http://127.0.0.1/a.jpg", "non-public address")]:
        with pytest.raises(InvalidInput, match=message):
            fetcher.check(url)
    with pytest.raises(InvalidInput, match="non-public address"):  # a name resolving to loopback: refused too
        asyncio.run(_fetch_and_close(fetcher, "http://localhost:9/a.jpg"))


async def _fetch_and_close(fetcher: UrlFetcher, url: str) -> bytes:
    try:
        return await fetcher.fetch(url)
    finally:
        await fetcher.close()


def test_api_keys() -> None:
    keys = [b"key-one", b"key-two"]
    assert check_api_key(b"Bearer key-two", keys) is None
    assert check_api_key(b"bearer  key-one ", keys) is None
    for header, message in [(None, "missing API key"), (b"Bearer nope", "invalid API key"),
                            (b"Basic key-one", "malformed"), (b"Bearer", "malformed")]:
        err = check_api_key(header, keys)
        assert isinstance(err, Unauthorized) and message in err.message
        assert "key-one" not in err.message


def test_settings_lists_and_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# comment\nfile-key\n\n")
    monkeypatch.setenv("VLSERVE_API_KEYS", "a, b,")
    monkeypatch.setenv("VLSERVE_API_KEYS_FILE", str(keys))
    monkeypatch.setenv("VLSERVE_CORS_ORIGINS", "http://a.example, http://b.example")
    s = Settings()
    assert s.api_key_list() == ["a", "b", "file-key"]
    assert s.cors_origins == ["http://a.example", "http://b.example"]
    assert "a, b" not in repr(s)  # secrets stay out of reprs and logs


def test_validation_errors_name_the_field_and_item() -> None:
    with pytest.raises(ValidationError) as caught:
        ClassifyRequest.model_validate({"images": ["ok", ""], "labels": ["a"]})
    err = invalid_request(caught.value.errors())
    assert (err.field, err.item) == ("images", 1) and err.message.startswith("images.1: String should have")
    with pytest.raises(ValidationError) as caught:
        EmbeddingsRequest.model_validate({"input": "x"})
    assert invalid_request(caught.value.errors()).message == "model is required"
    assert error_body(err) == {"error": {"type": "invalid_input", "message": str(err), "param": "images", "item": 1}}


def test_allowed_dimensions_follow_the_matryoshka_prefixes() -> None:
    info = {"fingerprint": "f", "embed_dim": 128, "matryoshka_dims": [16, 32, 64, 128], "spec": "toy"}
    model = DeployedModel("toy", "", info, {"text_encoder": "text_encoder"}, {}, None)  # type: ignore[arg-type]
    assert model.allowed_dimensions == [16, 32, 64, 128]
    model.check_dimensions(32)
    with pytest.raises(InvalidInput, match="use one of 16, 32, 64, 128"):
        model.check_dimensions(100)
    plain = DeployedModel("m", "", {**info, "matryoshka_dims": None}, {}, {}, None)  # type: ignore[arg-type]
    plain.check_dimensions(100)
    with pytest.raises(InvalidInput, match=r"use one of 1\.\.128"):
        plain.check_dimensions(129)


def test_cors_opens_only_to_the_configured_origins_and_preflight_needs_no_key() -> None:
    from starlette.testclient import TestClient

    from vlserve.gateway.app import create_app

    settings = Settings(cors_origins=["https://app.example"], api_keys="k1")  # type: ignore[arg-type]
    client = TestClient(create_app(settings))  # no lifespan: nothing here calls Triton
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    ok = client.options("/v1/embeddings", headers={"Origin": "https://app.example", **preflight})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://app.example"
    other = client.options("/v1/embeddings", headers={"Origin": "https://elsewhere.example", **preflight})
    assert "access-control-allow-origin" not in other.headers
    refused = client.get("/v1/models", headers={"Origin": "https://app.example"})
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == "https://app.example"
    assert client.get("/healthz").json() == {"status": "ok"}
