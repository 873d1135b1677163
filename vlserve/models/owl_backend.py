"""transformers backend for detectors: ``OwlViTForObjectDetection`` and ``Owlv2ForObjectDetection``,
chosen from the config's ``model_type``, with the checkpoint's own processor.

Everything is computed by the model's own modules, as its ``forward`` and
``image_guided_detection`` do: ``image_embedder`` (vision tower, class token merged into the patch
tokens, layer norm), ``box_predictor``, ``class_predictor`` and, for OWLv2, ``objectness_predictor``.

Text queries are tokenised as OWL-ViT was trained and as ``OwlViTProcessor`` does: the CLIP
tokenizer, padded to ``max_length`` (16) with the pad token ``!`` (id 0, the original's padding);
the text tower pools the end-of-text token by ``argmax(input_ids)`` (the highest id in CLIP's
vocabulary), and its causal mask keeps the padding after it from mattering.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch

from vlserve.errors import Unsupported
from vlserve.models.detector import Detector, DetectorFamily
from vlserve.models.hub import load_transformers
from vlserve.models.spec import ModelSpec
from vlserve.settings import Runtime

MODEL_CLASSES = {"owlvit": "OwlViTForObjectDetection", "owlv2": "Owlv2ForObjectDetection"}


class OwlDetector(Detector):
    def __init__(self, spec: ModelSpec, runtime: Runtime | None = None) -> None:
        from transformers import AutoProcessor

        if spec.backend != "hf":
            raise Unsupported(f"model spec {spec.raw!r} is an {spec.backend} dual encoder, not a detector; "
                              f"detectors are transformers OWL-ViT / OWLv2 checkpoints (hf:ORG/NAME, hf:/dir, "
                              f"or an alias of such a folder)", field="model")
        config, model, (self._processor,) = load_transformers(
            spec, MODEL_CLASSES, "a detector vlserve serves (OWL-ViT or OWLv2)", (AutoProcessor,))
        self.family = cast(DetectorFamily, config.model_type)
        self._max_tokens = int(config.text_config.max_position_embeddings)
        super().__init__(spec, model, runtime or Runtime())
        self._core: Any = getattr(self.model, "owlvit" if self.family == "owlvit" else "owlv2")

    @property
    def text_tower(self) -> torch.nn.Module:
        return self._core.text_model

    @property
    def image_tower(self) -> torch.nn.Module:
        return self._core.vision_model

    @property
    def max_query_tokens(self) -> int:
        return self._max_tokens

    def _preprocess(self, images: list[Any]) -> torch.Tensor:
        return self._processor.image_processor(images=images, return_tensors="pt")["pixel_values"]

    def _image_features(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                              torch.Tensor | None]:
        m: Any = self.model
        feature_map = m.image_embedder(pixel_values=pixels)[0]
        n, h, w, d = feature_map.shape
        tokens = feature_map.reshape(n, h * w, d)
        boxes = m.box_predictor(tokens, feature_map)
        class_embeds = m.class_predictor(tokens)[1]
        objectness = m.objectness_predictor(tokens) if self.family == "owlv2" else None
        return tokens, boxes, class_embeds, objectness

    def query_token_counts(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self._processor.tokenizer(list(texts))["input_ids"]]

    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return dict(self._processor.tokenizer(texts, padding="max_length", max_length=self._max_tokens,
                                              return_tensors="pt"))

    def _text_features(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self._core.get_text_features(**inputs)
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def _class_logits(self, tokens: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        return self.model.class_predictor(tokens, queries)[0]  # type: ignore[operator]

    def box_scale(self, size: tuple[int, int]) -> tuple[float, float]:
        h, w = size
        if self.family == "owlv2":  # padded bottom/right to a square: the frame is the longer side
            side = float(max(h, w))
            return side, side
        return float(w), float(h)  # OWL-ViT's processor stretches the image to the square input
