"""Every vlserve error type, and the one table mapping each to its HTTP status, Triton error code
and CLI exit code.

Errors carry structured fields instead of prefixes folded into their message: ``field`` names the
input or parameter at fault (``"image"``, ``"text"``, ``"dimensions"``...) and ``item`` the position
of the bad item in its batch. ``str(error)`` reads ``"image 3: not a decodable image ..."``.

Transports read :data:`ERROR_TABLE` (through :func:`mapping_of`) and never translate exceptions on
their own. Across Triton, whose errors carry only a message and a code, an error travels as
:func:`to_transport_message` (the readable message, then one line ``vlserve-error: {json}``) and is
rebuilt, same type and fields, by :func:`from_transport_message`. The table is documented in
docs/errors.md (a test keeps the two in step).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Self


class VLServeError(Exception):
    """Base class, and the type of an internal error. ``code`` is a stable machine-readable name."""

    code = "internal_error"

    def __init__(self, message: str, *, item: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.item = item
        self.field = field

    def __str__(self) -> str:
        if self.item is None:
            return self.message
        return f"{self.field or 'item'} {self.item}: {self.message}"

    @classmethod
    def rebuild(cls, message: str, item: int | None = None, field: str | None = None) -> Self:
        """The error as it was raised, from its message and fields (bypasses subclass constructors)."""
        err = cls.__new__(cls)
        VLServeError.__init__(err, message, item=item, field=field)
        return err

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        if self.item is not None:
            out["item"] = self.item
        return out


class InvalidInput(VLServeError):
    """The request itself is wrong: a corrupt image, an empty list, a bad parameter. ``field`` names
    the input or parameter; ``item`` the bad item's position when the input is a list."""

    code = "invalid_input"


class UnknownModelSpec(InvalidInput):
    """A spec string that names no known scheme, architecture or checkpoint."""

    code = "unknown_model_spec"


class IndexModelMismatch(InvalidInput):
    """A query embedded by another model (or of another dimension) than the index's.

    Raised by the index manifest's checks: model fingerprint, dimension, and the spec an index was
    built with when more items are added to it.
    """

    code = "model_mismatch"


class Unsupported(VLServeError):
    """Well-formed, but this model or deployment cannot do it (e.g. calibrated multi-label scores
    from a CLIP model)."""

    code = "unsupported"


class NotFound(VLServeError):
    """A named thing (index, head, item, file, model) does not exist or is not deployed."""

    code = "not_found"


class IndexBusy(VLServeError):
    """Another process is writing to this index (build, add or remove): the per-index writer lock
    is held. Retry when that process is done."""

    code = "index_busy"


class ModelUnavailable(VLServeError):
    """Weights cannot be loaded (offline with no cache, missing files) or the model server is down.

    On the client side, only a server that cannot be reached is this error.
    """

    code = "model_unavailable"


class Unauthorized(VLServeError):
    """A request without a valid API key where keys are required (the key itself is never echoed)."""

    code = "unauthorized"


class PayloadTooLarge(InvalidInput):
    """A request body over the size limit (``VLSERVE_MAX_BODY_BYTES``)."""

    code = "payload_too_large"


class UnsupportedMediaType(InvalidInput):
    """A request body of a content type the endpoint does not take (e.g. text/plain for JSON)."""

    code = "unsupported_media_type"


class Overloaded(VLServeError):
    """Too many requests in flight (``VLSERVE_MAX_IN_FLIGHT``): nothing was done; retry after a moment."""

    code = "overloaded"


class MissingExtra(VLServeError):
    """An optional dependency is not installed; the message names the extra to install."""

    code = "missing_dependency"

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"{package} is not installed; install it with: pip install 'vlserve[{extra}]'")


@dataclass(frozen=True)
class ErrorMapping:
    """How one error type leaves each transport."""

    http_status: int
    triton_code: str  # a ``pb_utils.TritonError`` code name
    exit_code: int  # the CLI's exit status


ERROR_TABLE: dict[type[VLServeError], ErrorMapping] = {
    VLServeError: ErrorMapping(500, "INTERNAL", 1),
    InvalidInput: ErrorMapping(400, "INVALID_ARG", 2),
    UnknownModelSpec: ErrorMapping(400, "INVALID_ARG", 3),
    IndexModelMismatch: ErrorMapping(400, "INVALID_ARG", 4),
    NotFound: ErrorMapping(404, "NOT_FOUND", 5),
    Unsupported: ErrorMapping(422, "UNSUPPORTED", 6),
    IndexBusy: ErrorMapping(409, "UNAVAILABLE", 7),
    ModelUnavailable: ErrorMapping(503, "UNAVAILABLE", 8),
    MissingExtra: ErrorMapping(501, "UNSUPPORTED", 9),
    Unauthorized: ErrorMapping(401, "INVALID_ARG", 10),
    PayloadTooLarge: ErrorMapping(413, "INVALID_ARG", 11),
    UnsupportedMediaType: ErrorMapping(415, "INVALID_ARG", 12),
    Overloaded: ErrorMapping(429, "UNAVAILABLE", 13),
}
# The type a bare Triton code stands for when the error carries no vlserve fields (Triton's own errors).
TRITON_CODE_TYPES: dict[str, type[VLServeError]] = {
    "INVALID_ARG": InvalidInput,
    "NOT_FOUND": NotFound,
    "UNSUPPORTED": Unsupported,
    "UNAVAILABLE": ModelUnavailable,
    "INTERNAL": VLServeError,
}
BY_CODE: dict[str, type[VLServeError]] = {t.code: t for t in ERROR_TABLE}
TRANSPORT_TAG = "vlserve-error: "


def mapping_of(error: VLServeError | type[VLServeError]) -> ErrorMapping:
    """The table row of ``error``'s type, or of its nearest ancestor in the table."""
    cls = error if isinstance(error, type) else type(error)
    for klass in cls.__mro__:
        if klass in ERROR_TABLE:
            return ERROR_TABLE[klass]
    raise TypeError(f"{cls.__name__} is not a VLServeError")


def to_transport_message(error: VLServeError) -> str:
    """The readable message, then one line of JSON (type code, message and fields) for the client."""
    fields = {"code": error.code, "message": error.message, "item": error.item, "field": error.field}
    return f"{error}\n{TRANSPORT_TAG}{json.dumps(fields)}"


def from_transport_message(text: str) -> VLServeError | None:
    """Rebuild the error :func:`to_transport_message` wrote into ``text``; None if it holds none."""
    _, sep, tail = text.rpartition(TRANSPORT_TAG)
    if not sep:
        return None
    try:
        fields = json.loads(tail.strip())
        cls = BY_CODE[fields["code"]]
        item = fields.get("item")
        return cls.rebuild(str(fields["message"]), item=None if item is None else int(item),
                           field=fields.get("field"))
    except (ValueError, KeyError, TypeError):
        return None
