"""The contract package: imports no torch, and is the one source of the Triton tensor table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from vlserve.api import schemas
from vlserve.api.tensors import TRITON_MODELS, markdown_table
from vlserve.serving.repository import RepoOptions, config_pbtxt

ROOT = Path(__file__).resolve().parents[2]


def test_contract_client_gateway_and_cli_import_no_torch() -> None:
    code = ("import sys, vlserve.api, vlserve.api.schemas, vlserve.serving.client, vlserve.gateway.app, "
            "vlserve.gateway.server, vlserve.cli; "
            "print([m for m in ('torch', 'torchvision', 'open_clip', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout


def test_docs_tensor_table_is_the_contract() -> None:
    assert markdown_table() in (ROOT / "docs" / "serving.md").read_text()


@pytest.mark.parametrize("name", list(TRITON_MODELS))
def test_config_declares_exactly_the_contract(name: str) -> None:
    text = config_pbtxt(name, name, "toy", RepoOptions())
    io = TRITON_MODELS[name]
    for spec in (*io.inputs, *io.outputs):
        assert spec.pbtxt() in text
    assert text.count("{ name: ") == len(io.inputs) + len(io.outputs)


def test_schemas_bound_their_lists_and_refuse_unknown_fields() -> None:
    schemas.EmbeddingsRequest(model="toy", input=["a red circle"], dimensions=64)
    with pytest.raises(ValidationError, match="at most 2048"):
        schemas.EmbeddingsRequest(model="toy", input=["a"] * 2049)
    with pytest.raises(ValidationError, match="Extra inputs"):
        schemas.ClassifyRequest(images=["aGk="], labels=["a"], colour="red")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        schemas.SearchRequest(index="g", texts=["a"], k=0)
    body = schemas.ErrorBody(error=schemas.ErrorDetail(type="invalid_input", message="not a decodable image",
                                                       param="images", item=0))
    assert json.loads(body.model_dump_json())["error"]["item"] == 0


def test_every_schema_has_a_json_schema() -> None:
    models = [v for v in vars(schemas).values() if isinstance(v, type) and issubclass(v, schemas.Schema)]
    assert len(models) > 15
    for m in models:
        assert m.model_json_schema()["type"] == "object"
