"""The committed OpenAPI document (docs/openapi.json) is what the live gateway serves, and schemathesis,
generating requests from it (a bounded, derandomized number per operation), finds no 5xx answer and
no answer off the schema. Regenerate the document with `.venv/bin/vlserve openapi --out docs/openapi.json`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from .gateway_stack import KEYS, Stack

pytestmark = pytest.mark.integration
DOC = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"
AUTH = {"Authorization": f"Bearer {KEYS[0]}"}


def test_live_schema_is_the_committed_one(stack: Stack) -> None:
    assert stack.http.get("/openapi.json").json() == json.loads(DOC.read_text()), \
        "docs/openapi.json drifted: run `.venv/bin/vlserve openapi --out docs/openapi.json`"


schema = schemathesis.openapi.from_path(DOC)  # the committed file; the live gateway comes from the fixture


@schema.parametrize()
@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_5xx_and_no_answer_off_the_schema(case: schemathesis.Case, stack: Stack) -> None:
    case.call_and_validate(base_url=stack.url, headers=AUTH,
                           checks=[not_a_server_error, response_schema_conformance, content_type_conformance])
