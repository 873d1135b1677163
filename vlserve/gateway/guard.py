"""The gate every HTTP request passes (one ASGI middleware): metrics, API keys, the body-size limit and
the bound on requests in flight.

* **API keys** (``VLSERVE_API_KEYS`` / ``VLSERVE_API_KEYS_FILE``): when any is set, every path but
  ``/healthz`` needs ``Authorization: Bearer KEY``. The token is compared with every key by
  :func:`hmac.compare_digest` (constant time, no early exit); keys are never logged or echoed.
* **Body size** (``VLSERVE_MAX_BODY_BYTES``): a declared ``Content-Length`` over it is refused before
  anything is read (413); a chunked body is counted as it arrives and refused when it passes it.
* **In flight** (``VLSERVE_MAX_IN_FLIGHT``): requests past the bound get 429 with ``Retry-After``
  at once, instead of queueing without limit in front of Triton. Health, readiness and metrics are
  not counted.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from vlserve.errors import Overloaded, PayloadTooLarge, Unauthorized, VLServeError
from vlserve.gateway.errors import error_response
from vlserve.gateway.metrics import Metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/healthz"})
UNCOUNTED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
METHODS = frozenset({"GET", "POST", "HEAD", "OPTIONS"})


def check_api_key(header: bytes | None, keys: list[bytes]) -> Unauthorized | None:
    """None when ``header`` is ``Bearer <one of keys>``; else the error to answer."""
    if not header:
        return Unauthorized("missing API key: send the header 'Authorization: Bearer <key>'")
    scheme, _, token = header.strip().partition(b" ")
    token = token.strip()
    if scheme.lower() != b"bearer" or not token:
        return Unauthorized("malformed Authorization header: expected 'Bearer <key>'")
    matched = False
    for key in keys:  # every key, always: the time taken does not tell which one (or how much) matched
        matched |= hmac.compare_digest(token, key)
    return None if matched else Unauthorized("invalid API key")


class RequestGuard:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, keys: list[str], max_body_bytes: int, max_in_flight: int,
                 retry_after_s: int, routes: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.keys = [k.encode() for k in keys]
        self.max_body = max_body_bytes
        self.max_in_flight = max_in_flight
        self.retry_after_s = retry_after_s
        self.routes = routes
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        start = time.perf_counter()
        status = [500]
        error_type: list[str | None] = [None]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            refused = self._refusal(scope, path)
            if refused is not None:
                error_type[0] = refused.code
                response = error_response(refused, self.retry_after_s)
                await response(scope, receive, send_status)
                return
            counted = path not in UNCOUNTED_PATHS
            if counted:
                self.in_flight += 1
                self.metrics.in_flight.inc()
            try:
                await self.app(scope, self._counting(receive), send_status)
            finally:
                if counted:
                    self.in_flight -= 1
                    self.metrics.in_flight.dec()
        finally:
            route = path if path in self.routes else "unmatched"  # labels stay a bounded set
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.metrics.requests.labels(route, method, str(status[0])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
            if error_type[0] is not None:
                self.metrics.errors.labels(error_type[0]).inc()

    def _refusal(self, scope: Scope, path: str) -> VLServeError | None:
        headers = dict(scope["headers"])
        if self.keys and path not in OPEN_PATHS and scope["method"] != "OPTIONS":
            refused = check_api_key(headers.get(b"authorization"), self.keys)
            if refused is not None:
                return refused
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return PayloadTooLarge(f"request body of {int(length)} bytes is over the limit of {self.max_body} "
                                   "(VLSERVE_MAX_BODY_BYTES)")
        if path not in UNCOUNTED_PATHS and self.in_flight >= self.max_in_flight:
            return Overloaded(f"{self.in_flight} requests in flight, the most this gateway takes at once "
                              f"(VLSERVE_MAX_IN_FLIGHT); retry in {self.retry_after_s} s")
        return None

    def _counting(self, receive: Receive) -> Receive:
        """``receive`` that refuses a body growing past the limit (chunked uploads declare no length)."""
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise PayloadTooLarge(f"request body is over the limit of {self.max_body} bytes "
                                          "(VLSERVE_MAX_BODY_BYTES)")
            return message

        return counted
