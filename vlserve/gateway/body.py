"""Reading request bodies: JSON (every POST route) or multipart/form-data (routes where curl and browser
users upload files), validated by the route's schema, with one error for each way it can be wrong:
415 for another content type, 400 for malformed JSON or a value the schema refuses (naming the field).

Routes read their body here rather than through FastAPI's body parameters so that every route refuses
the same way; :func:`body_doc` puts the schemas into the OpenAPI document.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from vlserve.errors import InvalidInput, UnsupportedMediaType
from vlserve.gateway.errors import invalid_request

M = TypeVar("M", bound=BaseModel)
FormReader = Callable[[FormData], Awaitable[dict[str, Any]]]
MAX_FORM_PARTS = 1100


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_body(request: Request, schema: type[M], form: FormReader | None = None) -> M:
    kind = media_type(request)
    if kind == "application/json" or kind.endswith("+json"):
        raw = await request.body()
        try:  # parsed and validated in one pass
            return schema.model_validate_json(raw)
        except ValidationError as e:
            errors = e.errors()
            if errors and errors[0]["type"] == "json_invalid":
                raise InvalidInput(f"malformed JSON body: {errors[0]['msg']}") from None
            raise invalid_request(errors) from None
    if form is not None and kind == "multipart/form-data":
        try:
            parts = await request.form(max_files=MAX_FORM_PARTS, max_fields=MAX_FORM_PARTS)
        except HTTPException as e:  # starlette's answer to a multipart body it cannot parse
            raise InvalidInput(f"malformed multipart body: {e.detail}") from None
        data = await form(parts)
    else:
        accepted = "application/json" + (" or multipart/form-data" if form is not None else "")
        raise UnsupportedMediaType(f"content type {kind or '(none)'!r} is not accepted here: send {accepted}")
    try:
        return schema.model_validate(data)
    except ValidationError as e:
        raise invalid_request(e.errors()) from None


async def _text(value: str | UploadFile) -> str:
    return value if isinstance(value, str) else (await value.read()).decode("utf-8", "replace")


async def _data_uri(value: str | UploadFile) -> str:
    """An uploaded file as a data URI, so it takes the same path (and limits) as a JSON image."""
    raw = value.encode() if isinstance(value, str) else await value.read()
    return "data:;base64," + base64.b64encode(raw).decode()


def form_reader(files: dict[str, str], repeated: dict[str, str], comma: frozenset[str] = frozenset(),
                json_fields: frozenset[str] = frozenset()) -> FormReader:
    """A reader of form parts into the JSON schema's fields: ``files`` (form name -> field) become lists
    of data URIs, ``repeated`` fields lists of strings (split on commas when named in ``comma``),
    ``json_fields`` are parsed as JSON, and every other part is a single value."""

    async def read(form: FormData) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name in dict.fromkeys(form.keys()):
            values = form.getlist(name)
            if name in files:
                data.setdefault(files[name], []).extend([await _data_uri(v) for v in values])
            elif name in repeated:
                items = [await _text(v) for v in values]
                if name in comma:
                    items = [x.strip() for item in items for x in item.split(",") if x.strip()]
                data[repeated[name]] = items
            elif len(values) > 1:
                raise InvalidInput(f"form field {name!r} given {len(values)} times; it takes one value", field=name)
            elif name in json_fields:
                try:
                    data[name] = json.loads(await _text(values[0]))
                except ValueError as e:
                    raise InvalidInput(f"form field {name!r} is not valid JSON ({e})", field=name) from None
            else:
                data[name] = await _text(values[0])
        return data

    return read


def body_doc(schema: type[BaseModel], form: type[BaseModel] | None = None) -> dict[str, Any]:
    """``openapi_extra`` declaring a route's request body (the schemas land in the components)."""
    content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema.__name__}"}}}
    if form is not None:
        content["multipart/form-data"] = {"schema": {"$ref": f"#/components/schemas/{form.__name__}"}}
    return {"requestBody": {"required": True, "content": content}}
