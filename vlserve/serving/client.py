"""Typed client for vlserve's Triton models, over HTTP or gRPC (sync and asyncio).

Triton errors come back as vlserve errors (one mapping table): INVALID_ARG -> InvalidInput,
NOT_FOUND -> NotFound, UNSUPPORTED -> Unsupported, an unreachable server -> ModelUnavailable.
Transport code: imports numpy and tritonclient only, never torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from vlserve.errors import InvalidInput, ModelUnavailable, NotFound, Unsupported, VLServeError

Protocol = Literal["http", "grpc"]


@dataclass
class Classification:
    labels: list[str]
    scores: list[float]
    embedding: np.ndarray
    rule: str
    explanation: dict[str, list[dict[str, Any]]]
    abstained: bool

    @property
    def multi_label(self) -> bool:
        return self.rule.startswith("sigmoid")


def map_error(exc: Exception) -> VLServeError:
    """Turn a tritonclient exception into the vlserve error it stands for."""
    status = str(getattr(exc, "status", lambda: "")() or "")
    message = getattr(exc, "message", lambda: str(exc))() or str(exc)
    text = f"{status} {message}".upper()
    if "INVALID_ARG" in text or status in ("400",):
        return InvalidInput(message)
    if "NOT_FOUND" in text or status == "404":
        return NotFound(message)
    if "UNSUPPORTED" in text or "UNIMPLEMENTED" in text:
        return Unsupported(message)
    return ModelUnavailable(message)


def _module(protocol: Protocol, aio: bool) -> Any:
    if protocol == "http":
        if aio:
            import tritonclient.http.aio as mod
        else:
            import tritonclient.http as mod
    elif protocol == "grpc":
        if aio:
            import tritonclient.grpc.aio as mod
        else:
            import tritonclient.grpc as mod
    else:
        raise InvalidInput(f"protocol must be http or grpc, got {protocol!r}")
    return mod


def _bytes_input(mod: Any, name: str, values: Sequence[bytes | str], row: bool = False) -> Any:
    arr = np.array([v.encode() if isinstance(v, str) else v for v in values], dtype=np.object_)
    arr = arr.reshape(1, -1) if row else arr.reshape(-1, 1)
    tensor = mod.InferInput(name, list(arr.shape), "BYTES")
    tensor.set_data_from_numpy(arr)
    return tensor


def _scalar_input(mod: Any, name: str, value: Any, dtype: Any, triton_type: str, rows: int) -> Any:
    arr = np.full((rows, 1), value, dtype=dtype)
    tensor = mod.InferInput(name, list(arr.shape), triton_type)
    tensor.set_data_from_numpy(arr)
    return tensor


class _Requests:
    """Builds inputs and reads outputs; shared by the sync and async clients."""

    def __init__(self, mod: Any, prefix: str) -> None:
        self.mod, self.prefix = mod, prefix

    def images(self, images: Sequence[bytes | np.ndarray], dimensions: int | None) -> list[Any]:
        if not images:
            raise InvalidInput("no images given (empty list)")
        if all(isinstance(i, bytes | bytearray) for i in images):
            inputs = [_bytes_input(self.mod, "IMAGE", [bytes(i) for i in images])]
        elif all(isinstance(i, np.ndarray) for i in images):
            arr = np.stack(images).astype(np.uint8)
            t = self.mod.InferInput("IMAGE_RAW", list(arr.shape), "UINT8")
            t.set_data_from_numpy(arr)
            inputs = [t]
        else:
            raise InvalidInput("images must be all encoded bytes or all uint8 HxWx3 arrays (same size)")
        if dimensions is not None:
            inputs.append(_scalar_input(self.mod, "DIMENSIONS", dimensions, np.int32, "INT32", len(images)))
        return inputs

    def texts(self, texts: Sequence[str], dimensions: int | None) -> list[Any]:
        if not texts:
            raise InvalidInput("no texts given (empty list)")
        inputs = [_bytes_input(self.mod, "TEXT", list(texts))]
        if dimensions is not None:
            inputs.append(_scalar_input(self.mod, "DIMENSIONS", dimensions, np.int32, "INT32", len(texts)))
        return inputs

    def classify(self, image: bytes | np.ndarray, labels: Sequence[str] | None, templates: Sequence[str] | None,
                 descriptors: dict[str, list[str]] | None, head: str | None, top_k: int, multi_label: bool | None,
                 abstain_threshold: float | None, dimensions: int | None) -> list[Any]:
        inputs = self.images([image], None)
        if labels:
            inputs.append(_bytes_input(self.mod, "LABELS", list(labels), row=True))
        if templates:
            inputs.append(_bytes_input(self.mod, "TEMPLATES", list(templates), row=True))
        if descriptors is not None:
            inputs.append(_bytes_input(self.mod, "DESCRIPTORS", [json.dumps(descriptors)]))
        if head:
            inputs.append(_bytes_input(self.mod, "HEAD", [head]))
        inputs.append(_scalar_input(self.mod, "TOP_K", top_k, np.int32, "INT32", 1))
        if multi_label is not None:
            inputs.append(_scalar_input(self.mod, "MULTI_LABEL", multi_label, bool, "BOOL", 1))
        if abstain_threshold is not None:
            inputs.append(_scalar_input(self.mod, "ABSTAIN_THRESHOLD", abstain_threshold, np.float32, "FP32", 1))
        if dimensions is not None:
            inputs.append(_scalar_input(self.mod, "DIMENSIONS", dimensions, np.int32, "INT32", 1))
        return inputs

    @staticmethod
    def classification(result: Any) -> Classification:
        labels = [v.decode() for v in result.as_numpy("LABEL")[0] if v]
        scores = [float(s) for s in result.as_numpy("SCORE")[0][: len(labels)]]
        return Classification(labels, scores, result.as_numpy("EMBEDDING")[0],
                              result.as_numpy("RULE")[0, 0].decode(),
                              json.loads(result.as_numpy("EXPLANATION")[0, 0].decode()),
                              bool(result.as_numpy("ABSTAINED")[0, 0]))


class VLServeClient:
    """Blocking client. ``url`` is ``host:port`` of Triton's HTTP or gRPC endpoint."""

    def __init__(self, url: str, protocol: Protocol = "http", prefix: str = "", timeout_s: float = 120.0) -> None:
        self.mod = _module(protocol, aio=False)
        kwargs = {"network_timeout": timeout_s, "connection_timeout": timeout_s} if protocol == "http" else {}
        self._client = self.mod.InferenceServerClient(url, **kwargs)
        self._req = _Requests(self.mod, prefix)
        self.prefix = prefix

    def _infer(self, model: str, inputs: list[Any]) -> Any:
        try:
            return self._client.infer(self.prefix + model, inputs)
        except Exception as e:
            raise map_error(e) from None

    def ready(self) -> bool:
        try:
            return bool(self._client.is_server_ready())
        except Exception:
            return False

    def embed_images(self, images: Sequence[bytes | np.ndarray], dimensions: int | None = None) -> np.ndarray:
        return self._infer("image_encoder", self._req.images(images, dimensions)).as_numpy("EMBEDDING")

    def embed_texts(self, texts: Sequence[str], dimensions: int | None = None) -> np.ndarray:
        return self._infer("text_encoder", self._req.texts(texts, dimensions)).as_numpy("EMBEDDING")

    def classify(self, image: bytes | np.ndarray, labels: Sequence[str] | None = None,
                 templates: Sequence[str] | None = None, descriptors: dict[str, list[str]] | None = None,
                 head: str | None = None, top_k: int = 5, multi_label: bool | None = None,
                 abstain_threshold: float | None = None, dimensions: int | None = None) -> Classification:
        inputs = self._req.classify(image, labels, templates, descriptors, head, top_k, multi_label,
                                    abstain_threshold, dimensions)
        return self._req.classification(self._infer("zero_shot_classifier", inputs))

    def close(self) -> None:
        self._client.close()


class AsyncVLServeClient:
    """asyncio client (``tritonclient.http.aio`` / ``tritonclient.grpc.aio``)."""

    def __init__(self, url: str, protocol: Protocol = "http", prefix: str = "") -> None:
        self.mod = _module(protocol, aio=True)
        self._client = self.mod.InferenceServerClient(url)
        self._req = _Requests(_module(protocol, aio=False), prefix)
        self.prefix = prefix

    async def _infer(self, model: str, inputs: list[Any]) -> Any:
        try:
            return await self._client.infer(self.prefix + model, inputs)
        except Exception as e:
            raise map_error(e) from None

    async def embed_images(self, images: Sequence[bytes | np.ndarray], dimensions: int | None = None) -> np.ndarray:
        return (await self._infer("image_encoder", self._req.images(images, dimensions))).as_numpy("EMBEDDING")

    async def embed_texts(self, texts: Sequence[str], dimensions: int | None = None) -> np.ndarray:
        return (await self._infer("text_encoder", self._req.texts(texts, dimensions))).as_numpy("EMBEDDING")

    async def classify(self, image: bytes | np.ndarray, labels: Sequence[str] | None = None,
                       templates: Sequence[str] | None = None, descriptors: dict[str, list[str]] | None = None,
                       head: str | None = None, top_k: int = 5, multi_label: bool | None = None,
                       abstain_threshold: float | None = None, dimensions: int | None = None) -> Classification:
        inputs = self._req.classify(image, labels, templates, descriptors, head, top_k, multi_label,
                                    abstain_threshold, dimensions)
        return self._req.classification(await self._infer("zero_shot_classifier", inputs))

    async def close(self) -> None:
        await self._client.close()
