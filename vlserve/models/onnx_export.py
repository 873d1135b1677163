"""The towers of a dual encoder as ONNX graphs, and an onnxruntime twin that embeds like the torch model.

Each tower is exported as the model computes it in vlserve: ``pixels [N, 3, H, W] float32`` (already
preprocessed, exactly the tensor ``encode_pixels`` takes) to L2-normalised ``embeddings [N, D]``, and
the tokenizer's tensors (``text`` for open_clip; ``input_ids``, plus ``attention_mask`` where the
family uses one, for transformers) to L2-normalised ``embeddings [N, D]``. Decoding, resizing and
tokenisation stay in Python, so the same preprocessing feeds both runtimes. The batch axis is
dynamic; the opset is written into ``onnx.json`` beside the graphs with the model's spec and
fingerprint, so a graph is never served under another model's name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlserve.errors import MissingExtra
from vlserve.models.base import DualEncoder

OPSET = 17
IMAGE_FILE, TEXT_FILE, MANIFEST = "image_encoder.onnx", "text_encoder.onnx", "onnx.json"


class _ImageTower(torch.nn.Module):
    def __init__(self, encoder: DualEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.inner = getattr(encoder, "model", None)  # registers the weights as parameters of this module

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.encoder._image_features(pixels).float(), dim=-1)


class _TextTower(torch.nn.Module):
    def __init__(self, encoder: DualEncoder, names: list[str]) -> None:
        super().__init__()
        self.encoder, self.names = encoder, names
        self.inner = getattr(encoder, "model", None)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        inputs = dict(zip(self.names, tensors, strict=True))
        return torch.nn.functional.normalize(self.encoder._text_features(inputs).float(), dim=-1)


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as e:
        raise MissingExtra("onnx", "onnx") from e
    return onnx


def export_towers(encoder: DualEncoder, out: Path, opset: int = OPSET) -> dict[str, Any]:
    """Write ``image_encoder.onnx``, ``text_encoder.onnx`` and ``onnx.json`` to ``out``; return the manifest."""
    onnx = _onnx()
    out.mkdir(parents=True, exist_ok=True)
    if encoder.dtype != torch.float32 or encoder.device.type != "cpu":
        raise ValueError("export from a CPU fp32 encoder (Runtime(device='cpu', precision='fp32'))")
    h, w = encoder.image_size
    pixels = torch.zeros(2, 3, h, w)
    sample = encoder._tokenize(["a photo of a star", "a red circle on a white background"])
    names = list(sample)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused attention kernel has no ONNX export; same math
    try:
        _export(encoder, out, opset, pixels, sample, names)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    for f in (IMAGE_FILE, TEXT_FILE):
        onnx.checker.check_model(str(out / f))
    manifest = {"spec": encoder.spec.canonical, "fingerprint": encoder.fingerprint, "family": encoder.family,
                "opset": opset, "embed_dim": int(encoder.embed_dim), "image_size": [h, w],
                "context_length": int(encoder.context_length),
                "text_inputs": {n: {"dtype": str(sample[n].dtype).removeprefix("torch."),
                                    "length": int(sample[n].shape[1])} for n in names},
                "exporter": f"torch.onnx (TorchScript) {torch.__version__}"}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _export(encoder: DualEncoder, out: Path, opset: int, pixels: torch.Tensor, sample: dict[str, torch.Tensor],
            names: list[str]) -> None:
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(_ImageTower(encoder).eval(), (pixels,), str(out / IMAGE_FILE), input_names=["pixels"],
                          output_names=["embeddings"], opset_version=opset, dynamo=False,
                          dynamic_axes={"pixels": {0: "batch"}, "embeddings": {0: "batch"}})
        torch.onnx.export(_TextTower(encoder, names).eval(), tuple(sample[n] for n in names), str(out / TEXT_FILE),
                          input_names=names, output_names=["embeddings"], opset_version=opset, dynamo=False,
                          dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names}, "embeddings": {0: "batch"}})


class OnnxTowers:
    """The exported towers under onnxruntime: ``encode_pixels`` and ``encode_tokens`` return what the
    torch encoder's ``encode_pixels`` / text path return for the same tensors."""

    def __init__(self, folder: Path, providers: list[str] | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise MissingExtra("onnxruntime", "onnx") from e
        self.manifest = json.loads((folder / MANIFEST).read_text())
        providers = providers or ["CPUExecutionProvider"]
        self.image = ort.InferenceSession(str(folder / IMAGE_FILE), providers=providers)
        self.text = ort.InferenceSession(str(folder / TEXT_FILE), providers=providers)

    def encode_pixels(self, pixels: np.ndarray | torch.Tensor) -> np.ndarray:
        x = pixels.numpy() if isinstance(pixels, torch.Tensor) else pixels
        return np.asarray(self.image.run(["embeddings"], {"pixels": np.ascontiguousarray(x, np.float32)})[0])

    def encode_tokens(self, inputs: Mapping[str, torch.Tensor | np.ndarray]) -> np.ndarray:
        feed = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}
        return np.asarray(self.text.run(["embeddings"], feed)[0])


class OnnxDualEncoder:
    """A dual encoder whose towers run under onnxruntime: preprocessing, tokenisation, the scoring rule
    and everything else come from the torch encoder the graphs were exported from (checked by
    fingerprint), so it answers with the same tensors through the same code paths."""

    def __init__(self, encoder: DualEncoder, folder: Path, providers: list[str] | None = None) -> None:
        self.towers = OnnxTowers(folder, providers)
        exported = self.towers.manifest.get("fingerprint")
        if exported != encoder.fingerprint:
            from vlserve.errors import ModelUnavailable

            raise ModelUnavailable(f"{folder}: the ONNX towers were exported from fingerprint {exported}, not from "
                                   f"{encoder.spec.raw} ({encoder.fingerprint}); export them again")
        self.torch_encoder = encoder
        self.runtime_name = "onnxruntime"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.torch_encoder, name)

    # the torch encoder's own public paths (batching by max_batch, input checks, normalisation), with
    # the two tower calls below in place of torch's
    encode_pixels = DualEncoder.encode_pixels
    encode_images = DualEncoder.encode_images
    encode_texts = DualEncoder.encode_texts

    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.towers.encode_pixels(pixels.float().cpu()))

    def _text_features(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.from_numpy(self.towers.encode_tokens({k: v.cpu() for k, v in inputs.items()}))
