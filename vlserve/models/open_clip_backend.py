"""open_clip backend: CLIP and SigLIP architectures (a SigLIP model is one with a ``logit_bias``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vlserve.errors import ModelUnavailable
from vlserve.models.base import DualEncoder, Runtime
from vlserve.models.hub import cache_only_unless_reachable, unavailable
from vlserve.models.spec import ModelSpec


class OpenClipEncoder(DualEncoder):
    def __init__(self, spec: ModelSpec, runtime: Runtime | None = None) -> None:
        model, preprocess, tokenizer = _load(spec)
        self._transform = preprocess
        self._tokenizer = tokenizer
        self.family = "siglip" if getattr(model, "logit_bias", None) is not None else "clip"
        super().__init__(spec, model, runtime or Runtime())

    def _preprocess(self, image: Any) -> torch.Tensor:
        return self._transform(image)

    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        # open_clip tokenizers truncate to the context length (keeping the end-of-text token)
        return {"text": self._tokenizer(texts)}

    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)  # type: ignore[operator]

    def _text_features(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.encode_text(inputs["text"])  # type: ignore[operator]

    def scale_and_bias(self) -> tuple[float, float]:
        scale = float(self.model.logit_scale.exp())  # type: ignore[operator]
        bias = getattr(self.model, "logit_bias", None)
        return scale, float(bias) if bias is not None else 0.0

    @property
    def context_length(self) -> int:
        return int(getattr(self._tokenizer, "context_length", 0) or getattr(self.model, "context_length", 0))

    @property
    def image_size(self) -> tuple[int, int]:
        size: Any = self.model.visual.image_size  # type: ignore[union-attr]
        return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _load(spec: ModelSpec) -> tuple[torch.nn.Module, Any, Any]:
    import open_clip

    if spec.local_dir is not None:
        folder = Path(spec.local_dir)
        if not (folder / "open_clip_config.json").is_file():
            raise ModelUnavailable(f"model spec {spec.raw!r}: {folder} has no open_clip_config.json "
                                   "(expected open_clip's local-dir layout: open_clip_config.json + weights)")
        name, pretrained = f"local-dir:{folder}", None
    else:
        assert spec.arch is not None
        if spec.pretrained and Path(spec.pretrained).suffix in (".safetensors", ".bin", ".pt", ".pth") \
                and not Path(spec.pretrained).is_file():
            raise ModelUnavailable(f"model spec {spec.raw!r}: checkpoint file {spec.pretrained} does not exist")
        name, pretrained = spec.arch, None if spec.random_init else spec.pretrained
    with cache_only_unless_reachable(), torch.random.fork_rng(devices=[]):
        # ``?init=random`` draws from a fixed seed, so a spec always names the same weights (and the same
        # fingerprint) in every process; the caller's RNG state is left as it was
        torch.manual_seed(spec.seed)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained)
            tokenizer = open_clip.get_tokenizer(name)
        except (OSError, RuntimeError, ValueError) as e:
            raise unavailable(spec.raw, e) from e
    return model, preprocess, tokenizer
