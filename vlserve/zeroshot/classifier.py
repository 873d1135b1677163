"""Zero-shot classification with calibrated scores, a head registry and cached text embeddings.

Scores follow the model family's own rule: CLIP and ALIGN give a softmax over the label set
(mutually exclusive labels); SigLIP gives independent sigmoids (multi-label, they need not sum to 1).
A SigLIP head may be asked for a softmax instead (``multi_label=False``); CLIP/ALIGN logits are not
calibrated as independent probabilities, so asking them for multi-label scores is refused.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlserve.errors import InvalidInput, NotFound, Unsupported
from vlserve.models.base import DualEncoder, scores_from_logits
from vlserve.models.images import ImageInput
from vlserve.models.text_cache import TextEmbeddingCache
from vlserve.zeroshot.heads import DEFAULT_MAX_LABELS, DescriptorHead, Head, TemplateHead, load_head, save_head
from vlserve.zeroshot.templates import template_set


@dataclass
class Prediction:
    labels: list[dict[str, Any]]
    rule: str
    multi_label: bool
    abstained: bool

    def to_dict(self) -> dict[str, Any]:
        return {"labels": self.labels, "rule": self.rule, "multi_label": self.multi_label,
                "abstained": self.abstained}


class ZeroShotClassifier:
    def __init__(self, model: DualEncoder, cache: TextEmbeddingCache | None = None,
                 heads_dir: Path | None = None, max_labels: int = DEFAULT_MAX_LABELS,
                 max_recent_heads: int = 64) -> None:
        self.model = model
        self.cache = cache if cache is not None else TextEmbeddingCache()
        self.heads_dir = heads_dir
        self.max_labels = max_labels
        self._heads: dict[str, Head] = {}
        self._recent: OrderedDict[str, Head] = OrderedDict()
        self.max_recent_heads = max_recent_heads
        self._lock = threading.Lock()

    # ---- heads ---------------------------------------------------------------------------------
    def labels_head(self, labels: Sequence[str], templates: Sequence[str] | None = None,
                    name: str = "") -> TemplateHead:
        templates = list(templates or template_set("photo"))
        key = json.dumps(["templates", list(labels), templates, name])
        head = self._recent_head(key)
        if head is None:
            head = self._remember(key, TemplateHead.build(self.model, labels, templates, self.cache, name,
                                                          self.max_labels))
        assert isinstance(head, TemplateHead)
        return head

    def descriptors_head(self, descriptors: dict[str, list[str]], name: str = "", **prompt_format: str
                         ) -> DescriptorHead:
        key = json.dumps(["descriptors", descriptors, name, prompt_format], sort_keys=True, default=str)
        head = self._recent_head(key)
        if head is None:
            head = self._remember(key, DescriptorHead.build(self.model, descriptors, self.cache, name,
                                                            max_labels=self.max_labels, **prompt_format))
        assert isinstance(head, DescriptorHead)
        return head

    def _recent_head(self, key: str) -> Head | None:
        """Recently built heads, so a repeated label set costs one dictionary look-up."""
        with self._lock:
            head = self._recent.get(key)
            if head is not None:
                self._recent.move_to_end(key)
            return head

    def _remember(self, key: str, head: Head) -> Head:
        with self._lock:
            self._recent[key] = head
            while len(self._recent) > self.max_recent_heads:
                self._recent.popitem(last=False)
        return head

    def register(self, head: Head, persist: bool = True) -> Head:
        """Keep ``head`` under its name for later requests (and on disk when a heads dir is set)."""
        if not head.name:
            raise InvalidInput("a registered head needs a name")
        with self._lock:
            self._heads[head.name] = head
        if persist and self.heads_dir is not None:
            save_head(head, self.heads_dir / self.model.fingerprint)
        return head

    def head(self, name: str) -> Head:
        with self._lock:
            found = self._heads.get(name)
        if found is None and self.heads_dir is not None:
            path = self.heads_dir / self.model.fingerprint / f"{name}.json"
            if path.is_file():
                found = self.register(load_head(path), persist=False)
        if found is None:
            raise NotFound(f"no classifier head named {name!r} for this model; registered: "
                           f"{', '.join(sorted(self._heads)) or '(none)'}")
        return found

    # ---- scoring -------------------------------------------------------------------------------
    def classify(self, images: Sequence[ImageInput], head: Head, top_k: int = 5, multi_label: bool | None = None,
                 abstain_threshold: float | None = None, dimensions: int | None = None) -> list[Prediction]:
        return self.classify_embeddings(self.model.encode_images(images), head, top_k, multi_label,
                                        abstain_threshold, dimensions)

    def classify_embeddings(self, image_emb: np.ndarray, head: Head, top_k: int = 5,
                            multi_label: bool | None = None, abstain_threshold: float | None = None,
                            dimensions: int | None = None) -> list[Prediction]:
        if head.fingerprint != self.model.fingerprint:
            raise InvalidInput(f"head {head.name or '(unnamed)'} was built for model {head.fingerprint}, "
                               f"not {self.model.fingerprint}")
        if top_k < 1:
            raise InvalidInput(f"top_k must be >= 1, got {top_k}")
        if abstain_threshold is not None and not 0.0 <= abstain_threshold <= 1.0:
            raise InvalidInput(f"abstain_threshold must be in [0, 1], got {abstain_threshold}")
        family_multi = self.model.multi_label
        multi = family_multi if multi_label is None else multi_label
        if multi and not family_multi:
            raise Unsupported(f"{self.model.family} logits are calibrated only as a softmax over the label set; "
                              "independent (multi-label) probabilities need a SigLIP model")
        scale, bias = self.model.scale_and_bias()
        cos = head.cosines(image_emb, dimensions).astype(np.float64)
        logits = scale * cos + bias
        probs = scores_from_logits(logits, sigmoid=multi).astype(np.float64)
        rule = self.model.scoring_rule if multi == family_multi else "softmax(exp(logit_scale) * cos + logit_bias)"
        if isinstance(head, DescriptorHead):
            rule += " with cos = mean of descriptor cosines"
        out = []
        k = min(top_k, len(head.classes))
        for i in range(len(cos)):
            order = np.argsort(-probs[i])[:k]
            labels = []
            for j in order:
                item: dict[str, Any] = {"label": head.classes[j], "score": round(float(probs[i, j]), 6),
                                        "cosine": round(float(cos[i, j]), 6), "logit": round(float(logits[i, j]), 4)}
                if isinstance(head, DescriptorHead):
                    item["explanation"] = head.explain(image_emb[i], int(j), dimensions)
                labels.append(item)
            abstained = abstain_threshold is not None and float(probs[i, order[0]]) < abstain_threshold
            out.append(Prediction(labels, rule, multi, abstained))
        return out
