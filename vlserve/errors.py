"""One error taxonomy for the whole product.

Engine code raises these; each transport maps them once (HTTP status, Triton error code, CLI exit
code) from the attributes below, so no route or adapter translates exceptions on its own.
"""

from __future__ import annotations


class VLServeError(Exception):
    """Base class. ``code`` is a stable machine-readable name; ``http_status`` its HTTP mapping."""

    code = "internal_error"
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message}


class InvalidInput(VLServeError):
    """The request itself is wrong: a corrupt image, an empty list, a bad parameter."""

    code = "invalid_input"
    http_status = 400


class UnknownModelSpec(InvalidInput):
    """A spec string that names no known scheme, architecture or checkpoint."""

    code = "unknown_model_spec"


class Unsupported(VLServeError):
    """Well-formed, but this model or deployment cannot do it."""

    code = "unsupported"
    http_status = 422


class NotFound(VLServeError):
    """A named thing (index, head, item, model) does not exist or is not deployed."""

    code = "not_found"
    http_status = 404


class Overloaded(VLServeError):
    code = "overloaded"
    http_status = 429


class ModelUnavailable(VLServeError):
    """Weights cannot be loaded (offline with no cache, missing files) or the model server is down."""

    code = "model_unavailable"
    http_status = 503


class MissingExtra(VLServeError):
    """An optional dependency is not installed; the message names the extra to install."""

    code = "missing_dependency"
    http_status = 501

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"{package} is not installed; install it with: pip install 'vlserve[{extra}]'")
