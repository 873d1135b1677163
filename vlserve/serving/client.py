"""Typed client for vlserve's Triton models, over HTTP or gRPC (sync and asyncio).

Requests are built from the tensor contract in :mod:`vlserve.api.tensors`. A vlserve error raised
inside a Triton model comes back as the same type with its fields (:mod:`vlserve.errors` decodes
it); Triton's own errors map from their code through the error table; an unreachable server is
:class:`ModelUnavailable`. Any other exception (a bug here) propagates as itself.
Transport code: imports numpy, tritonclient, :mod:`vlserve.api` and :mod:`vlserve.errors`, never torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from tritonclient.utils import InferenceServerException

from vlserve.api.tensors import DETECTOR, IMAGE_ENCODER, PIXEL_TEXT, TEXT_ENCODER, ZERO_SHOT_CLASSIFIER, ModelIO
from vlserve.errors import (
    TRITON_CODE_TYPES,
    InvalidInput,
    ModelUnavailable,
    NotFound,
    VLServeError,
    from_transport_message,
)

Protocol = Literal["http", "grpc"]
Box = tuple[float, float, float, float]
NOT_DEPLOYED_HINTS = {DETECTOR.name: "the detector is deployed only when a detector spec is configured "
                                     "(VLSERVE_DETECTOR_MODEL, or `vlserve serve --detector-model SPEC`)"}


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


@dataclass
class Detections:
    """The boxes found in one image, best first: ``boxes`` [K, 4] (x0, y0, x1, y1 in the image's
    pixels), ``scores`` [K], ``queries`` [K] (index of each box's query), ``labels`` (each box's query
    text, or "image query N"), ``relative_scores`` [K] (image queries; NaN for text queries)."""

    boxes: np.ndarray
    scores: np.ndarray
    queries: np.ndarray
    labels: list[str]
    relative_scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


@dataclass
class SegmentationResult:
    """One image's pixel-text maps: ``scores`` [L, h, w] float32 (one map per label, in ``labels``
    order), ``segmentation`` [h, w] int32 (label index, -1 background), the ``method`` applied. The
    maps are the image's aspect, at most 512 on the longer side."""

    labels: list[str]
    scores: np.ndarray
    segmentation: np.ndarray
    method: str

    def mask(self, label: str) -> np.ndarray:
        """Boolean [h, w]: where ``label`` won."""
        return self.segmentation == self.labels.index(label)


# How Triton reports each of its error codes: HTTP status, gRPC status.
_TRITON_STATUSES = {
    "INVALID_ARG": ("400", "StatusCode.INVALID_ARGUMENT"),
    "NOT_FOUND": ("404", "StatusCode.NOT_FOUND"),
    "UNSUPPORTED": ("501", "StatusCode.UNIMPLEMENTED"),
    "UNAVAILABLE": ("503", "StatusCode.UNAVAILABLE"),
    "INTERNAL": ("500", "StatusCode.INTERNAL"),
}


def map_error(exc: InferenceServerException) -> VLServeError:
    """The vlserve error a tritonclient exception stands for."""
    message = exc.message() or str(exc)
    decoded = from_transport_message(message)
    if decoded is not None:
        return decoded
    status = str(exc.status() or "")
    for code, statuses in _TRITON_STATUSES.items():
        if status in statuses:
            return TRITON_CODE_TYPES[code](message)
    if status == "StatusCode.DEADLINE_EXCEEDED":  # no answer in time
        return ModelUnavailable(f"Triton did not answer: {message}")
    return VLServeError(message)


def _call_failed(exc: BaseException) -> VLServeError | None:
    """The vlserve error for a failed call, or None when ``exc`` is not a transport failure."""
    if isinstance(exc, InferenceServerException):
        return map_error(exc)
    if isinstance(exc, OSError | TimeoutError):  # refused, reset, unreachable, timed out
        return ModelUnavailable(f"cannot reach Triton: {exc}")
    return None


def _not_deployed(exc: BaseException, model: str, ready: Any) -> VLServeError | None:
    """NotFound when a call failed with Triton's own error (no vlserve payload) because ``model`` is not
    loaded on the server (``ready(model)`` is false); None otherwise, or when that cannot be told."""
    if not isinstance(exc, InferenceServerException) or from_transport_message(exc.message() or "") is not None:
        return None
    try:
        if ready(model):
            return None
    except Exception:  # the server cannot say: keep the original error
        return None
    hint = next((h for name, h in NOT_DEPLOYED_HINTS.items() if model.endswith(name)), "")
    return NotFound(f"model {model!r} is not deployed on this Triton server" + (f": {hint}" if hint else ""),
                    field="model")


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
        raise InvalidInput(f"protocol must be http or grpc, got {protocol!r}", field="protocol")
    return mod


def _tensor(mod: Any, io: ModelIO, name: str, arr: np.ndarray) -> Any:
    """An ``InferInput`` for ``io``'s input ``name``, typed as the contract says."""
    spec = io.input(name)
    if spec.dtype == "BYTES":
        arr = np.array([v.encode() if isinstance(v, str) else v for v in arr.reshape(-1)],
                       dtype=np.object_).reshape(arr.shape)
    else:
        arr = np.asarray(arr, dtype=spec.numpy_dtype)
    tensor = mod.InferInput(spec.name, list(arr.shape), spec.dtype)
    tensor.set_data_from_numpy(arr)
    return tensor


def _grpc_channel_args() -> list[tuple[str, int]]:
    """tritonclient's own gRPC channel options, plus a reconnect back-off capped at one second (gRPC's
    default grows to two minutes): a restarted Triton is used again at once, not minutes later."""
    from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, KeepAliveOptions

    keep = KeepAliveOptions()
    return [("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
            ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
            ("grpc.keepalive_time_ms", keep.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", keep.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", keep.keepalive_permit_without_calls),
            ("grpc.http2.max_pings_without_data", keep.http2_max_pings_without_data),
            ("grpc.initial_reconnect_backoff_ms", 200), ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 1000)]


def _column(values: Sequence[Any]) -> np.ndarray:
    """One value per row: shape [N, 1]."""
    arr = np.empty((len(values), 1), dtype=np.object_)
    arr[:, 0] = list(values)
    return arr


class _Requests:
    """Builds inputs and reads outputs; shared by the sync and async clients."""

    def __init__(self, mod: Any) -> None:
        self.mod = mod

    def images(self, images: Sequence[bytes | np.ndarray], dimensions: int | None,
               io: ModelIO = IMAGE_ENCODER) -> list[Any]:
        if not images:
            raise InvalidInput("no images given (empty list)", field="images")
        if all(isinstance(i, bytes | bytearray) for i in images):
            inputs = [_tensor(self.mod, io, "IMAGE", _column([bytes(i) for i in images]))]
        elif all(isinstance(i, np.ndarray) for i in images):
            inputs = [_tensor(self.mod, io, "IMAGE_RAW", np.stack(images).astype(np.uint8))]
        else:
            raise InvalidInput("images must be all encoded bytes or all uint8 HxWx3 arrays (same size)",
                               field="images")
        if dimensions is not None:
            inputs.append(_tensor(self.mod, io, "DIMENSIONS", np.full((len(images), 1), dimensions)))
        return inputs

    def texts(self, texts: Sequence[str], dimensions: int | None) -> list[Any]:
        if not texts:
            raise InvalidInput("no texts given (empty list)", field="texts")
        inputs = [_tensor(self.mod, TEXT_ENCODER, "TEXT", _column(list(texts)))]
        if dimensions is not None:
            inputs.append(_tensor(self.mod, TEXT_ENCODER, "DIMENSIONS", np.full((len(texts), 1), dimensions)))
        return inputs

    def classify(self, image: bytes | np.ndarray, labels: Sequence[str] | None, templates: Sequence[str] | None,
                 descriptors: dict[str, list[str]] | None, head: str | None, top_k: int, multi_label: bool | None,
                 abstain_threshold: float | None, dimensions: int | None) -> list[Any]:
        io = ZERO_SHOT_CLASSIFIER
        inputs = self.images([image], None, io)
        rows: dict[str, Any] = {"LABELS": list(labels or []) or None, "TEMPLATES": list(templates or []) or None}
        for name, values in rows.items():
            if values is not None:
                inputs.append(_tensor(self.mod, io, name, np.array(values, dtype=np.object_).reshape(1, -1)))
        scalars = {"DESCRIPTORS": None if descriptors is None else json.dumps(descriptors), "HEAD": head or None,
                   "TOP_K": top_k, "MULTI_LABEL": multi_label, "ABSTAIN_THRESHOLD": abstain_threshold,
                   "DIMENSIONS": dimensions}
        for name, value in scalars.items():
            if value is not None:
                inputs.append(_tensor(self.mod, io, name, _column([value])))
        return inputs

    def detect(self, images: Sequence[bytes | np.ndarray], queries: Sequence[str] | None,
               query_images: Sequence[bytes] | None, query_boxes: Sequence[Box | None] | None,
               threshold: float | None, nms_iou: float | None, top_k: int | None) -> list[Any]:
        io = DETECTOR
        inputs = self.images(images, None, io)
        n = len(images)
        if queries:
            inputs.append(_tensor(self.mod, io, "QUERIES", np.array([list(queries)] * n, dtype=np.object_)))
        if query_images:
            blobs = np.empty((n, len(query_images)), dtype=np.object_)
            for row in range(n):
                blobs[row, :] = [bytes(b) for b in query_images]
            inputs.append(_tensor(self.mod, io, "QUERY_IMAGES", blobs))
        if query_boxes is not None:
            boxes = np.array([[np.nan] * 4 if b is None else list(b) for b in query_boxes], np.float32)
            inputs.append(_tensor(self.mod, io, "QUERY_BOXES", np.broadcast_to(boxes, (n, *boxes.shape)).copy()))
        for name, value in {"THRESHOLD": threshold, "NMS_IOU": nms_iou, "TOP_K": top_k}.items():
            if value is not None:
                inputs.append(_tensor(self.mod, io, name, np.full((n, 1), value)))
        return inputs

    def segment(self, images: Sequence[bytes | np.ndarray], labels: Sequence[str], method: str | None,
                templates: Sequence[str] | None, background_threshold: float | None, output_side: int | None,
                stride: int | None = None) -> list[Any]:
        io = PIXEL_TEXT
        if not labels:
            raise InvalidInput("no labels given: name at least one label", field="labels")
        inputs = self.images(images, None, io)
        n = len(images)
        inputs.append(_tensor(self.mod, io, "LABELS", np.array([list(labels)] * n, dtype=np.object_)))
        if templates:
            inputs.append(_tensor(self.mod, io, "TEMPLATES", np.array([list(templates)] * n, dtype=np.object_)))
        if method is not None:
            inputs.append(_tensor(self.mod, io, "METHOD", _column([method] * n)))
        for name, value in {"BACKGROUND_THRESHOLD": background_threshold, "OUTPUT_SIDE": output_side,
                            "STRIDE": stride}.items():
            if value is not None:
                inputs.append(_tensor(self.mod, io, name, np.full((n, 1), value)))
        return inputs

    @staticmethod
    def segmentations(result: Any, labels: Sequence[str]) -> list[SegmentationResult]:
        out = []
        scores, seg = result.as_numpy("SCORES"), result.as_numpy("SEGMENTATION")
        for row, (h, w) in enumerate(result.as_numpy("OUTPUT_SIZE")):
            out.append(SegmentationResult(list(labels), scores[row, :, :h, :w].astype(np.float32),
                                          seg[row, :h, :w], result.as_numpy("METHOD_USED")[row, 0].decode()))
        return out

    @staticmethod
    def detections(result: Any, queries: Sequence[str] | None, query_images: Sequence[bytes] | None
                   ) -> list[Detections]:
        labels = list(queries or []) or [f"image query {i}" for i in range(len(query_images or []))]
        out = []
        for row, count in enumerate(result.as_numpy("COUNT")[:, 0]):
            q = result.as_numpy("QUERY")[row, :count]
            out.append(Detections(result.as_numpy("BOXES")[row, :count], result.as_numpy("SCORES")[row, :count],
                                  q, [labels[int(i)] for i in q], result.as_numpy("RELATIVE_SCORES")[row, :count]))
        return out

    @staticmethod
    def model_info(result: Any) -> dict[str, Any]:
        info: dict[str, Any] = json.loads(result.as_numpy("MODEL_INFO")[0, 0].decode())
        return info

    def call(self, io: ModelIO, inputs: dict[str, np.ndarray]) -> list[Any]:
        return [_tensor(self.mod, io, name, arr) for name, arr in inputs.items()]

    @staticmethod
    def outputs(io: ModelIO, result: Any) -> dict[str, np.ndarray]:
        return {o.name: result.as_numpy(o.name) for o in io.outputs}

    @staticmethod
    def config(answer: dict[str, Any]) -> dict[str, Any]:
        """A model config (HTTP answers the config itself, gRPC wraps it in ``config``)."""
        config: dict[str, Any] = answer.get("config", answer)
        return config

    @staticmethod
    def ready_models(index: Any) -> list[str]:
        """Names of the READY models in a repository index (HTTP: a list; gRPC: ``{"models": [...]}``)."""
        rows = index.get("models", []) if isinstance(index, dict) else index
        return sorted({r["name"] for r in rows if r.get("state") == "READY"})

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
        self._req = _Requests(self.mod)
        self.prefix = prefix

    def _infer(self, model: str, inputs: list[Any]) -> Any:
        try:
            return self._client.infer(self.prefix + model, inputs)
        except Exception as e:
            failed = _call_failed(e)
            if failed is None:
                raise
            raise _not_deployed(e, self.prefix + model, self._client.is_model_ready) or failed from None

    def ready(self) -> bool:
        try:
            return bool(self._client.is_server_ready())
        except Exception:
            return False

    def embed_images(self, images: Sequence[bytes | np.ndarray], dimensions: int | None = None) -> np.ndarray:
        return self._infer(IMAGE_ENCODER.name, self._req.images(images, dimensions)).as_numpy("EMBEDDING")

    def embed_texts(self, texts: Sequence[str], dimensions: int | None = None) -> np.ndarray:
        return self._infer(TEXT_ENCODER.name, self._req.texts(texts, dimensions)).as_numpy("EMBEDDING")

    def classify(self, image: bytes | np.ndarray, labels: Sequence[str] | None = None,
                 templates: Sequence[str] | None = None, descriptors: dict[str, list[str]] | None = None,
                 head: str | None = None, top_k: int = 5, multi_label: bool | None = None,
                 abstain_threshold: float | None = None, dimensions: int | None = None) -> Classification:
        inputs = self._req.classify(image, labels, templates, descriptors, head, top_k, multi_label,
                                    abstain_threshold, dimensions)
        return self._req.classification(self._infer(ZERO_SHOT_CLASSIFIER.name, inputs))

    def detect(self, images: Sequence[bytes | np.ndarray], queries: Sequence[str] | None = None, *,
               query_images: Sequence[bytes] | None = None, query_boxes: Sequence[Box | None] | None = None,
               threshold: float | None = None, nms_iou: float | None = None, top_k: int | None = None
               ) -> list[Detections]:
        """Boxes in each image for text ``queries`` or example ``query_images`` (each with an optional
        pixel box); options default to the server's (threshold 0.1, NMS IoU 0.3, top-k 100)."""
        inputs = self._req.detect(images, queries, query_images, query_boxes, threshold, nms_iou, top_k)
        return self._req.detections(self._infer(DETECTOR.name, inputs), queries, query_images)

    def segment(self, images: Sequence[bytes | np.ndarray], labels: Sequence[str], *, method: str | None = None,
                templates: Sequence[str] | None = None, background_threshold: float | None = None,
                output_side: int | None = None, stride: int | None = None) -> list[SegmentationResult]:
        """Per-label score maps and a segmentation of each image (method default: the DenseCLIP head
        where one is deployed, else MaskCLIP); ``stride``: sliding windows (training-free methods)."""
        inputs = self._req.segment(images, labels, method, templates, background_threshold, output_side, stride)
        return self._req.segmentations(self._infer(PIXEL_TEXT.name, inputs), labels)

    def close(self) -> None:
        self._client.close()


class AsyncVLServeClient:
    """asyncio client (``tritonclient.http.aio`` / ``tritonclient.grpc.aio``)."""

    def __init__(self, url: str, protocol: Protocol = "http", prefix: str = "") -> None:
        self.mod = _module(protocol, aio=True)
        kwargs = {"channel_args": _grpc_channel_args()} if protocol == "grpc" else {}
        self._client = self.mod.InferenceServerClient(url, **kwargs)
        self._req = _Requests(_module(protocol, aio=False))
        self.prefix = prefix
        self.protocol = protocol

    async def _infer(self, model: str, inputs: list[Any]) -> Any:
        try:
            return await self._client.infer(self.prefix + model, inputs)
        except Exception as e:
            failed = _call_failed(e)
            if failed is None:
                raise
            not_deployed = None
            if isinstance(e, InferenceServerException):
                ready = await self._ready_or_none(self.prefix + model)
                not_deployed = _not_deployed(e, self.prefix + model, lambda _: ready is not False)
            raise not_deployed or failed from None

    async def _ready_or_none(self, model: str) -> bool | None:
        try:
            return bool(await self._client.is_model_ready(model))
        except Exception:
            return None

    async def _server(self, call: Any) -> Any:
        """A server (not inference) call; an unreachable server is :class:`ModelUnavailable`."""
        try:
            return await call
        except Exception as e:
            failed = _call_failed(e)
            if failed is None:
                raise
            raise failed from None

    async def ready(self) -> bool:
        """Whether Triton answers and says it is ready (never raises)."""
        try:
            return bool(await self._client.is_server_ready())
        except Exception:
            return False

    async def model_ready(self, model: str) -> bool:
        """Whether ``prefix + model`` is loaded and ready on the server."""
        return bool(await self._server(self._client.is_model_ready(self.prefix + model)))

    async def ready_models(self) -> list[str]:
        """Names of every model the server has loaded and ready (prefix not applied)."""
        kwargs = {"as_json": True} if self.protocol == "grpc" else {}
        return self._req.ready_models(await self._server(self._client.get_model_repository_index(**kwargs)))

    async def model_config(self, model: str) -> dict[str, Any]:
        """``model``'s config as JSON (``max_batch_size``, ``parameters``...; prefix not applied)."""
        kwargs = {"as_json": True} if self.protocol == "grpc" else {}
        return self._req.config(await self._server(self._client.get_model_config(model, **kwargs)))

    async def describe(self) -> dict[str, Any]:
        """The deployed model's identity (spec, fingerprint, family, embed_dim, matryoshka_dims...), from
        the text encoder's ``MODEL_INFO`` output."""
        return self._req.model_info(await self._infer(TEXT_ENCODER.name, self._req.texts(["a"], None)))

    async def call(self, io: ModelIO, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Any model of the tensor contract: ``io``'s inputs by name (batch-first arrays) -> every output."""
        return self._req.outputs(io, await self._infer(io.name, self._req.call(io, inputs)))

    async def embed_images(self, images: Sequence[bytes | np.ndarray], dimensions: int | None = None) -> np.ndarray:
        return (await self._infer(IMAGE_ENCODER.name, self._req.images(images, dimensions))).as_numpy("EMBEDDING")

    async def embed_texts(self, texts: Sequence[str], dimensions: int | None = None) -> np.ndarray:
        return (await self._infer(TEXT_ENCODER.name, self._req.texts(texts, dimensions))).as_numpy("EMBEDDING")

    async def classify(self, image: bytes | np.ndarray, labels: Sequence[str] | None = None,
                       templates: Sequence[str] | None = None, descriptors: dict[str, list[str]] | None = None,
                       head: str | None = None, top_k: int = 5, multi_label: bool | None = None,
                       abstain_threshold: float | None = None, dimensions: int | None = None) -> Classification:
        inputs = self._req.classify(image, labels, templates, descriptors, head, top_k, multi_label,
                                    abstain_threshold, dimensions)
        return self._req.classification(await self._infer(ZERO_SHOT_CLASSIFIER.name, inputs))

    async def detect(self, images: Sequence[bytes | np.ndarray], queries: Sequence[str] | None = None, *,
                     query_images: Sequence[bytes] | None = None, query_boxes: Sequence[Box | None] | None = None,
                     threshold: float | None = None, nms_iou: float | None = None, top_k: int | None = None
                     ) -> list[Detections]:
        inputs = self._req.detect(images, queries, query_images, query_boxes, threshold, nms_iou, top_k)
        return self._req.detections(await self._infer(DETECTOR.name, inputs), queries, query_images)

    async def segment(self, images: Sequence[bytes | np.ndarray], labels: Sequence[str], *, method: str | None = None,
                      templates: Sequence[str] | None = None, background_threshold: float | None = None,
                      output_side: int | None = None, stride: int | None = None) -> list[SegmentationResult]:
        inputs = self._req.segment(images, labels, method, templates, background_threshold, output_side, stride)
        return self._req.segmentations(await self._infer(PIXEL_TEXT.name, inputs), labels)

    async def close(self) -> None:
        await self._client.close()
