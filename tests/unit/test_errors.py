"""The one error table: complete, distinct exit codes, documented, and every type survives the trip
through a transport message with its fields."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from vlserve import errors
from vlserve.errors import (
    BY_CODE,
    ERROR_TABLE,
    InvalidInput,
    MissingExtra,
    VLServeError,
    from_transport_message,
    mapping_of,
    to_transport_message,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
ALL_TYPES = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, VLServeError)]


def test_every_error_type_has_one_row_and_its_own_exit_code() -> None:
    assert set(ALL_TYPES) == set(ERROR_TABLE)
    exit_codes = [m.exit_code for m in ERROR_TABLE.values()]
    assert len(set(exit_codes)) == len(exit_codes) and 0 not in exit_codes
    assert len(BY_CODE) == len(ERROR_TABLE)  # codes are unique too


def test_docs_table_is_the_error_table() -> None:
    rows = re.findall(r"^\| `(\w+)` \| `(\w+)` \| (\d+) \| (\w+) \| (\d+) \|", DOC.read_text(), re.M)
    documented = {name: (code, int(http), triton, int(exit_code)) for name, code, http, triton, exit_code in rows}
    assert documented == {t.__name__: (t.code, m.http_status, m.triton_code, m.exit_code)
                          for t, m in ERROR_TABLE.items()}


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda c: c.__name__)
def test_transport_message_round_trip_keeps_type_and_fields(cls: type[VLServeError]) -> None:
    err = cls.rebuild("something is off: {braces} and \"quotes\"", item=3, field="image")
    text = to_transport_message(err)
    assert text.splitlines()[0] == "image 3: something is off: {braces} and \"quotes\""
    back = from_transport_message(f"[request 7] {text}")  # a prefix added on the way does not matter
    assert type(back) is cls and (back.message, back.item, back.field) == (err.message, 3, "image")


def test_subclass_outside_the_table_maps_like_its_parent() -> None:
    class Special(InvalidInput):
        pass

    assert mapping_of(Special("x")) == ERROR_TABLE[InvalidInput]


def test_plain_messages_hold_no_error() -> None:
    assert from_transport_message("unexpected inference input 'FOO'") is None
    assert from_transport_message("x\nvlserve-error: {not json") is None


def test_str_names_the_item_only_when_there_is_one() -> None:
    assert str(InvalidInput("dimensions must be an integer in 1..32", field="dimensions")) == \
        "dimensions must be an integer in 1..32"
    assert str(InvalidInput("expected a string, got int", item=2, field="text")) == "text 2: expected a string, got int"
    assert MissingExtra("ray", "ray").to_dict()["error"] == "missing_dependency"
