"""How an error leaves the gateway: the HTTP status of its row in the error table
(:data:`vlserve.errors.ERROR_TABLE`) and OpenAI's body shape ``{"error": {"type", "message", "param",
"item"}}``. Every path (route, middleware, request validation, routing) answers through
:func:`error_response`; nothing else picks a status for an error.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from starlette.responses import Response

from vlserve.errors import InvalidInput, VLServeError, mapping_of

log = logging.getLogger("vlserve.gateway")
RETRY_STATUSES = (429, 503)


def error_body(error: VLServeError) -> dict[str, Any]:
    detail: dict[str, Any] = {"type": error.code, "message": str(error)}
    if error.field is not None:
        detail["param"] = error.field
    if error.item is not None:
        detail["item"] = error.item
    return {"error": detail}


def error_response(error: VLServeError, retry_after_s: int = 1, status: int | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    """The answer for ``error``: its table status (``status`` only for plain HTTP routing errors such as
    405), with ``Retry-After`` on 429 and 503 and ``WWW-Authenticate`` on 401."""
    status = status or mapping_of(error).http_status
    headers = dict(headers or {})
    if status in RETRY_STATUSES:
        headers["Retry-After"] = str(retry_after_s)
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return Response(json.dumps(error_body(error)), status, headers=headers, media_type="application/json")


_FIELD = re.compile(r"^[A-Za-z_]\w*$")


def invalid_request(errors: Sequence[Any]) -> InvalidInput:
    """One :class:`InvalidInput` for pydantic's validation errors, naming the first problem's field and
    item (``images.3: String should have at least 1 character``) and counting the others."""
    if not errors:
        return InvalidInput("invalid request")
    first = errors[0]
    # union members show up in the location as their type names ("list[str]"): keep fields and positions only
    loc = [p for p in first.get("loc", ()) if isinstance(p, int) or (_FIELD.match(str(p)) and p != "body")]
    names = [str(p) for p in loc if not isinstance(p, int)]
    item = next((p for p in loc[1:] if isinstance(p, int)), None) if loc else None
    where = ".".join(str(p) for p in loc)
    message = f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid request"))
    if first.get("type") == "missing" and names:
        message = f"{names[-1]} is required"
    others = len({tuple(e.get("loc", ())) for e in errors}) - 1
    if others > 0:
        message += f" (and {others} more problem{'s' if others > 1 else ''})"
    return InvalidInput(message, field=names[0] if names else None, item=item)
