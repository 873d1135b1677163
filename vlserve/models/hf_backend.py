"""transformers backend: ``CLIPModel``, ``SiglipModel`` and ``AlignModel``, chosen from the config.

transformers 5: ``get_image_features`` / ``get_text_features`` return output objects whose
``pooler_output`` is the projected embedding. Text inputs follow each family's original model:

* SigLIP (big_vision; open_clip's SigLIP too) pads to the full context with the pad token equal to
  EOS, runs the text tower with **no attention mask** (every position attends to the padding) and
  pools the last position. transformers 5's ``SiglipTokenizer`` also returns an ``attention_mask``;
  passing it on (as ``model(**processor(...))`` does) changes the embedding, so vlserve feeds
  ``input_ids`` only, exactly as the checkpoint was trained.
* CLIP pools at the end-of-text token and ALIGN masks padding, so padding to the longest is exact.
"""

from __future__ import annotations

from typing import Any

import torch

from vlserve.models.base import DualEncoder, Family, Runtime
from vlserve.models.hub import load_transformers
from vlserve.models.spec import ModelSpec

FAMILIES: dict[str, Family] = {"clip": "clip", "siglip": "siglip", "align": "align"}
MODEL_CLASSES = {"clip": "CLIPModel", "siglip": "SiglipModel", "align": "AlignModel"}


class HFEncoder(DualEncoder):
    def __init__(self, spec: ModelSpec, runtime: Runtime | None = None) -> None:
        from transformers import AutoImageProcessor, AutoTokenizer

        config, model, (self._image_processor, self._tokenizer) = load_transformers(
            spec, MODEL_CLASSES, "a dual encoder vlserve serves", (AutoImageProcessor, AutoTokenizer))
        self.family = FAMILIES[config.model_type]
        self._context = int(config.text_config.max_position_embeddings)
        vision = config.vision_config
        size = getattr(vision, "image_size", None) or 224
        self._image_size = (int(size), int(size))
        self._padding: bool | str = "max_length" if self.family == "siglip" else True
        super().__init__(spec, model, runtime or Runtime())

    def _preprocess(self, image: Any) -> torch.Tensor:
        return self._image_processor(images=image, return_tensors="pt")["pixel_values"][0]

    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self._tokenizer(texts, padding=self._padding, truncation=True, max_length=self._context,
                              return_tensors="pt")
        if self.family == "siglip":  # the original SigLIP uses no attention mask (module docstring)
            return {"input_ids": enc["input_ids"]}
        return dict(enc)

    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return _pooled(self.model.get_image_features(pixel_values=pixels))  # type: ignore[operator]

    def _text_features(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return _pooled(self.model.get_text_features(**inputs))  # type: ignore[operator]

    def scale_and_bias(self) -> tuple[float, float]:
        m: Any = self.model
        if self.family == "align":
            return 1.0 / float(m.temperature), 0.0
        bias = float(m.logit_bias) if self.family == "siglip" else 0.0
        return float(m.logit_scale.exp()), bias

    @property
    def context_length(self) -> int:
        return self._context

    @property
    def image_size(self) -> tuple[int, int]:
        return self._image_size


def _pooled(out: Any) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out.pooler_output
