"""The gateway as the UI sees it: a small synchronous HTTP client whose failures are readable sentences.

Every call goes through the gateway's public API (the same JSON a service sends), with the API key
added server-side when auth is on. A gateway error becomes a :class:`GatewayError` carrying the
error body's type, message and parameter, ready to show to a person; a gateway that does not answer
becomes one too, naming its URL.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import httpx


class GatewayError(Exception):
    """A failed gateway call, as one sentence for a person (no traceback, no JSON)."""

    def __init__(self, message: str, status: int | None = None, kind: str | None = None) -> None:
        super().__init__(message)
        self.status, self.kind = status, kind


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class GatewayAPI:
    url: str
    api_key: str | None = None
    timeout_s: float = 120.0

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            r = httpx.request(method, f"{self.url.rstrip('/')}{path}", json=body, headers=self._headers(),
                              timeout=self.timeout_s)
        except httpx.TimeoutException as e:
            raise GatewayError(f"The gateway at {self.url} did not answer within {self.timeout_s:.0f} s.") from e
        except httpx.HTTPError as e:
            raise GatewayError(f"The gateway at {self.url} is not reachable ({type(e).__name__}).") from e
        if r.status_code < 400:
            return r.json()
        raise error_of(r)

    def get(self, path: str) -> Any:
        return self._call("GET", path)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._call("POST", path, {k: v for k, v in body.items() if v is not None})

    # ---- the endpoints the tabs use ------------------------------------------------------------------
    def models(self) -> list[dict[str, Any]]:
        return list(self.get("/v1/models")["data"])

    def indexes(self) -> dict[str, Any]:
        return dict(self.get("/v1/indexes"))

    def search(self, index: str, texts: list[str] | None = None, images: list[bytes] | None = None,
               ids: list[int] | None = None, k: int = 12, dimensions: int | None = None,
               where: list[str] | None = None) -> dict[str, Any]:
        return dict(self.post("/v1/search", {"index": index, "texts": texts, "ids": ids, "k": k,
                                             "images": [b64(i) for i in images] if images else None,
                                             "dimensions": dimensions, "where": where or []}))

    def classify(self, images: list[bytes], labels: list[str] | None = None, templates: list[str] | None = None,
                 descriptors: dict[str, list[str]] | None = None, top_k: int = 5, multi_label: bool | None = None,
                 dimensions: int | None = None, model: str | None = None) -> dict[str, Any]:
        return dict(self.post("/v1/classify", {"images": [b64(i) for i in images], "labels": labels,
                                               "templates": templates, "descriptors": descriptors,
                                               "top_k": top_k, "multi_label": multi_label,
                                               "dimensions": dimensions, "model": model}))

    def detect(self, image: bytes, queries: list[str] | None = None, query_image: bytes | None = None,
               query_box: tuple[float, float, float, float] | None = None, threshold: float = 0.1,
               model: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"images": [b64(image)], "queries": queries, "threshold": threshold, "model": model}
        if query_image is not None:
            body["query_images"] = [b64(query_image)]
            body["query_boxes"] = [list(query_box)] if query_box else None
        return dict(self.post("/v1/detect", body))

    def segment(self, image: bytes, labels: list[str], method: str | None = None,
                model: str | None = None) -> dict[str, Any]:
        return dict(self.post("/v1/segment", {"images": [b64(image)], "labels": labels, "method": method,
                                              "model": model, "heatmaps": True}))


def error_of(r: httpx.Response) -> GatewayError:
    """The gateway's error body (``{"error": {type, message, param}}``) as one readable sentence."""
    try:
        detail = r.json()["error"]
        text = str(detail["message"])
        if detail.get("param"):
            text += f" (in {detail['param']})"
        kind = str(detail.get("type") or "")
    except (ValueError, KeyError, TypeError):
        text, kind = (r.text.strip()[:300] or r.reason_phrase), ""
    if "not deployed" in text:
        return GatewayError(f"Not deployed here: {text}", r.status_code, kind)
    if r.status_code in (401, 403):
        return GatewayError(f"The gateway refused the UI's API key: {text}", r.status_code, kind)
    if r.status_code == 503:
        return GatewayError(f"The model server is not ready; try again in a moment ({text}).", r.status_code, kind)
    return GatewayError(text, r.status_code, kind)
