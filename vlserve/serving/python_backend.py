"""Plumbing shared by the Triton python-backend models in ``model_repository/``.

Each ``model.py`` stays an adapter: read tensors, call the engine, write tensors. This module holds
what they share: building the engine from the model config's ``parameters``, reading optional
inputs, and turning a vlserve error into a ``pb_utils.TritonError`` by the error table
(:mod:`vlserve.errors`), so a bad request gets its own error response and never fails its batch
neighbours.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from vlserve.errors import InvalidInput, ModelUnavailable, VLServeError, mapping_of, to_transport_message

log = logging.getLogger("vlserve.serving")
T = TypeVar("T")


def parameters(args: dict[str, str]) -> dict[str, str]:
    """The ``parameters`` block of a model config as a plain dict."""
    config = json.loads(args["model_config"])
    return {k: v["string_value"] for k, v in config.get("parameters", {}).items()}


def load_engine(args: dict[str, str]) -> Any:
    """The dual encoder named by the ``MODEL_SPEC`` parameter, on this instance's device.

    The runtime is the one :class:`~vlserve.settings.Settings` builds (``VLSERVE_PRECISION``,
    ``VLSERVE_MAX_BATCH``, ``VLSERVE_MAX_IMAGE_PIXELS``...), with the config's ``DEVICE``,
    ``PRECISION``, ``MAX_BATCH`` and ``MAX_IMAGE_PIXELS`` parameters taking precedence. The
    device ``auto`` is the instance Triton placed (``KIND_AUTO``: a GPU when present).
    """
    from vlserve.models import load_dual_encoder

    return _load(args, load_dual_encoder)


def load_detector_engine(args: dict[str, str]) -> Any:
    """The detector named by the ``MODEL_SPEC`` parameter (runtime as :func:`load_engine`)."""
    from vlserve.models import load_detector

    return _load(args, load_detector)


def _load(args: dict[str, str], loader: Callable[[str, Any], Any]) -> Any:
    from vlserve.settings import Settings

    params = parameters(args)
    if "MODEL_SPEC" not in params:
        raise ModelUnavailable("model config has no MODEL_SPEC parameter")
    settings = Settings()
    device = params.get("DEVICE") or settings.device
    if device == "auto":
        kind = args.get("model_instance_kind", "CPU")
        device = f"cuda:{args.get('model_instance_device_id', '0')}" if kind == "GPU" else "cpu"
    runtime = settings.runtime(device=device, precision=params.get("PRECISION"),
                               max_batch=_int_param(params, "MAX_BATCH"),
                               max_image_pixels=_int_param(params, "MAX_IMAGE_PIXELS"))
    engine = loader(params["MODEL_SPEC"], runtime)
    if params.get("RUNTIME", "torch") == "onnx":  # towers under onnxruntime, from ONNX_DIR (repository-relative)
        from vlserve.models.onnx_export import OnnxDualEncoder

        repository = Path(args.get("model_repository", ".")).parent
        engine = OnnxDualEncoder(engine, repository / params.get("ONNX_DIR", "onnx"))
    elif params.get("RUNTIME", "torch") != "torch":
        raise ModelUnavailable(f"model config parameter RUNTIME must be torch or onnx, got {params['RUNTIME']!r}")
    log.info("loaded %s (%s) on %s, %s", params["MODEL_SPEC"], engine.fingerprint, engine.device,
             params.get("RUNTIME", "torch"))
    return engine


def onnx_session(path: Path, gpu: bool = False) -> Any:
    """An onnxruntime session for an exported tower graph (CUDA first on a GPU instance, where available)."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        from vlserve.errors import MissingExtra

        raise MissingExtra("onnxruntime", "onnx") from e
    if not path.is_file():
        raise ModelUnavailable(f"ONNX graph {path} not found: build the repository again with --runtime onnx")
    wanted = (["CUDAExecutionProvider"] if gpu else []) + ["CPUExecutionProvider"]
    providers = [p for p in wanted if p in ort.get_available_providers()]
    return ort.InferenceSession(str(path), providers=providers)


def _int_param(params: dict[str, str], key: str) -> int | None:
    if key not in params:
        return None
    try:
        return int(params[key])
    except ValueError:
        raise ModelUnavailable(f"model config parameter {key} must be an integer, got {params[key]!r}") from None


def triton_error(pb_utils: Any, exc: BaseException) -> Any:
    """The ``TritonError`` for ``exc``, by the error table; an unexpected exception is logged here and
    answered as a bare internal error, so internals never reach a client."""
    codes = pb_utils.TritonError
    if isinstance(exc, VLServeError):
        return codes(to_transport_message(exc), getattr(codes, mapping_of(exc).triton_code))
    log.exception("internal error", exc_info=exc)
    return codes(to_transport_message(VLServeError("internal error")), codes.INTERNAL)


def parse_each(pb_utils: Any, requests: list[Any], parse: Callable[[Any], T]
               ) -> tuple[list[Any], list[tuple[int, T]]]:
    """``parse`` every request of a batch; one it refuses gets its own error response, so a bad
    request never fails its neighbours. Returns (responses, [(request index, parsed)])."""
    responses: list[Any] = [None] * len(requests)
    parsed = []
    for i, request in enumerate(requests):
        try:
            parsed.append((i, parse(request)))
        except Exception as e:
            responses[i] = pb_utils.InferenceResponse(error=triton_error(pb_utils, e))
    return responses, parsed


def optional(pb_utils: Any, request: Any, name: str) -> np.ndarray | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def optional_scalar(pb_utils: Any, request: Any, name: str, kind: type) -> Any:
    """First value of an optional per-request input (e.g. DIMENSIONS, TOP_K), or None."""
    arr = optional(pb_utils, request, name)
    if arr is None or arr.size == 0:
        return None
    value = arr.reshape(-1)[0]
    return value.decode() if isinstance(value, bytes) else kind(value)


def strings(arr: np.ndarray | None) -> list[str]:
    """A BYTES tensor's first row as a list of strings (batch dimension dropped)."""
    if arr is None:
        return []
    row = arr[0] if arr.ndim > 1 else arr
    out = []
    for v in np.asarray(row).reshape(-1):
        try:
            out.append(v.decode("utf-8") if isinstance(v, bytes) else str(v))
        except UnicodeDecodeError:
            raise InvalidInput("text inputs must be UTF-8") from None
    return out


def same_on_every_row(arr: np.ndarray | None, name: str) -> np.ndarray | None:
    """A per-request input sent on every row of a batched request (e.g. the queries of a detection
    over N images): the first row, after checking the others repeat it."""
    if arr is None or len(arr) == 0:
        return None
    if any(not np.array_equal(row, arr[0]) for row in arr[1:]):
        raise InvalidInput(f"{name} must be the same on every row of a request", field=name)
    return np.asarray(arr[0])


def image_inputs(pb_utils: Any, request: Any) -> list[Any]:
    """The request's images: encoded ``IMAGE`` bytes or raw ``IMAGE_RAW`` uint8 HWC arrays."""
    encoded = optional(pb_utils, request, "IMAGE")
    raw = optional(pb_utils, request, "IMAGE_RAW")
    if (encoded is None) == (raw is None):
        raise InvalidInput("give exactly one of IMAGE (encoded bytes) or IMAGE_RAW (uint8 HxWx3)")
    if encoded is not None:
        return [bytes(v) for v in encoded.reshape(len(encoded), -1)[:, 0]]
    assert raw is not None
    return list(raw)


def texts_and_dimensions(pb_utils: Any, request: Any, embed_dim: int) -> tuple[list[str], int | None]:
    """A text request's UTF-8 ``TEXT`` rows and its checked Matryoshka ``DIMENSIONS`` (None: full)."""
    from vlserve.matryoshka import check_dimensions

    arr = optional(pb_utils, request, "TEXT")
    if arr is None:
        raise InvalidInput("missing TEXT input", field="TEXT")
    try:
        texts = [bytes(v).decode("utf-8") for v in arr.reshape(len(arr), -1)[:, 0]]
    except UnicodeDecodeError:
        raise InvalidInput("TEXT must be UTF-8", field="TEXT") from None
    dims = optional_scalar(pb_utils, request, "DIMENSIONS", int)
    check_dimensions(dims, embed_dim)
    return texts, dims


def pixels_and_dimensions(pb_utils: Any, request: Any, engine: Any) -> tuple[Any, int | None]:
    """An image request's preprocessed pixels (the engine's own transform) and checked ``DIMENSIONS``."""
    from vlserve.matryoshka import check_dimensions

    dims = optional_scalar(pb_utils, request, "DIMENSIONS", int)
    check_dimensions(dims, engine.embed_dim)
    return engine.preprocess(image_inputs(pb_utils, request)), dims


def model_info(engine: Any) -> bytes:
    """What a client needs to know about the model behind a Triton model, as JSON (the text encoder's
    ``MODEL_INFO`` output): the transport side cannot load the model to find out."""
    from vlserve.retrieval.manifest import declared_matryoshka_dims

    info = engine.info()
    keys = ("spec", "canonical_spec", "family", "embed_dim", "fingerprint", "scoring_rule", "multi_label",
            "context_length", "image_size")
    return json.dumps({**{k: info[k] for k in keys},
                       "matryoshka_dims": declared_matryoshka_dims(engine.spec)}).encode()


def embedding_responses(pb_utils: Any, encode: Any, owners: list[tuple[int, int, int | None]],
                        responses: list[Any], info: bytes | None = None) -> list[Any]:
    """Run ``encode()`` once for the whole batch and split its rows back to the requests.

    ``owners``: (request index, rows, Matryoshka dimensions) in batch order. If the shared forward
    fails, every request in it gets that error; requests refused earlier keep their own errors.
    ``info`` (the text encoder's :func:`model_info`) goes out as ``MODEL_INFO`` on every row.
    """
    from vlserve.matryoshka import truncate

    if not owners:
        return responses
    try:
        emb = encode()
    except Exception as e:
        err = triton_error(pb_utils, e)
        for i, _, _ in owners:
            responses[i] = pb_utils.InferenceResponse(error=err)
        return responses
    start = 0
    for i, n, dims in owners:
        out = truncate(emb[start:start + n], dims)
        start += n
        outputs = [as_batch(pb_utils, "EMBEDDING", out)]
        if info is not None:
            outputs.append(as_batch(pb_utils, "MODEL_INFO", np.full((n, 1), info, dtype=np.object_)))
        responses[i] = pb_utils.InferenceResponse(output_tensors=outputs)
    return responses


def as_batch(pb_utils: Any, name: str, arr: np.ndarray) -> Any:
    return pb_utils.Tensor(name, np.ascontiguousarray(arr))


def bytes_array(values: list[str]) -> np.ndarray:
    return np.array([v.encode("utf-8") for v in values], dtype=np.object_)
