"""Engine-side logic behind the Triton ``zero_shot_classifier`` model (no Triton types here).

Heads are resolved per request (labels + templates, a descriptor JSON, or a registered name); the
classifier keeps recently built heads, so a repeated label set costs nothing. The images of a whole dynamic batch are
decoded one by one (a bad image fails only its request) and encoded in one forward pass.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlserve.errors import InvalidInput
from vlserve.matryoshka import check_dimensions
from vlserve.models.base import DualEncoder
from vlserve.models.text_cache import TextEmbeddingCache
from vlserve.zeroshot.classifier import Prediction, ZeroShotClassifier
from vlserve.zeroshot.descriptors import validate_descriptors
from vlserve.zeroshot.heads import Head
from vlserve.zeroshot.templates import resolve_templates, template_set


class ClassifierService:
    def __init__(self, engine: DualEncoder, params: dict[str, str]) -> None:
        cache_file = params.get("TEXT_CACHE")
        heads_dir = params.get("HEADS_DIR")
        self.classifier = ZeroShotClassifier(
            engine, TextEmbeddingCache(cache_file or None), Path(heads_dir) if heads_dir else None,
            max_labels=int(params.get("MAX_LABELS", "10000")))
        self.engine = engine
        if params.get("HEADS_FILE"):
            self.register_file(Path(params["HEADS_FILE"]))

    def register_file(self, path: Path) -> None:
        """Warm-up: ``{name: {"labels": [...], "templates": [...]} | {"descriptors": {...}}}``."""
        spec = json.loads(path.read_text())
        for name, item in spec.items():
            if "descriptors" in item:
                head: Head = self.classifier.descriptors_head(item["descriptors"], name=name)
            else:
                head = self.classifier.labels_head(item["labels"], resolve_templates(item.get("templates"),
                                                                                     template_set("photo")), name)
            self.classifier.register(head, persist=False)

    def head_for(self, labels: list[str], templates: list[str], descriptors: str | None, name: str | None) -> Head:
        given = [x for x in (labels, descriptors, name) if x]
        if len(given) != 1:
            raise InvalidInput("give exactly one of LABELS, DESCRIPTORS or HEAD")
        if name:
            return self.classifier.head(name)
        if descriptors:
            try:
                obj = json.loads(descriptors)
            except json.JSONDecodeError as e:
                raise InvalidInput(f"DESCRIPTORS is not valid JSON ({e})") from None
            return self.classifier.descriptors_head(validate_descriptors(obj, "DESCRIPTORS"))
        return self.classifier.labels_head(labels, resolve_templates(templates, template_set("photo")))

    def classify_batch(self, parsed: list[tuple[int, list[Any], Head, dict[str, Any]]]
                       ) -> list[tuple[int, tuple[list[Prediction], np.ndarray] | BaseException]]:
        """``parsed``: (request index, images, head, options) -> (index, (predictions, embeddings) | error)."""
        out: list[tuple[int, tuple[list[Prediction], np.ndarray] | BaseException]] = []
        pixels, ok = [], []
        for i, images, head, options in parsed:
            try:
                check_dimensions(options.get("dimensions"), self.engine.embed_dim)
                pixels.append(self.engine.preprocess(images))
                ok.append((i, len(images), head, options))
            except Exception as e:
                out.append((i, e))
        if not pixels:
            return out
        emb = self.engine.encode_pixels(torch.cat(pixels))
        start = 0
        for i, n, head, options in ok:
            chunk = emb[start:start + n]
            start += n
            try:
                out.append((i, (self.classifier.classify_embeddings(chunk, head, **options), chunk)))
            except Exception as e:
                out.append((i, e))
        return out
