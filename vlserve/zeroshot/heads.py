"""Classifier heads: a label set turned into text embeddings once, reused for every image.

* :class:`TemplateHead`: per class, embed every template, average the normalised embeddings and
  re-normalise (open_clip's ``build_zero_shot_classifier`` rule); class score = cosine.
* :class:`DescriptorHead`: per class, one prompt per descriptor (Menon & Vondrick's rule, see
  :mod:`vlserve.zeroshot.descriptors`); class score = mean of the descriptor cosines, and the
  per-descriptor cosines are the explanation.

A head remembers the model fingerprint it was built for and is saved as JSON plus an ``.npz``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vlserve.errors import InvalidInput
from vlserve.matryoshka import truncate
from vlserve.models.base import DualEncoder
from vlserve.models.text_cache import TextEmbeddingCache
from vlserve.zeroshot.descriptors import descriptor_prompt, validate_descriptors

DEFAULT_MAX_LABELS = 10_000


def check_labels(labels: Sequence[str], max_labels: int = DEFAULT_MAX_LABELS) -> list[str]:
    labels = list(labels)
    if not labels:
        raise InvalidInput("empty label list: give at least one label")
    if len(labels) > max_labels:
        raise InvalidInput(f"{len(labels)} labels exceed the limit of {max_labels} (VLSERVE_MAX_LABELS)")
    bad = [x for x in labels if not isinstance(x, str) or not x.strip()]
    if bad:
        raise InvalidInput(f"labels must be non-empty strings, got {bad[:3]!r}")
    dups = sorted(x for x, n in Counter(labels).items() if n > 1)
    if dups:
        raise InvalidInput(f"duplicate labels: {', '.join(repr(d) for d in dups[:10])}")
    return labels


def _encode(model: DualEncoder, prompts: list[str], cache: TextEmbeddingCache | None) -> np.ndarray:
    return cache.encode(model, prompts) if cache is not None else model.encode_texts(prompts)


@dataclass
class TemplateHead:
    classes: list[str]
    templates: list[str]
    embeddings: np.ndarray  # [C, D], normalised
    fingerprint: str
    name: str = ""
    kind: str = "templates"

    @classmethod
    def build(cls, model: DualEncoder, classes: Sequence[str], templates: Sequence[str],
              cache: TextEmbeddingCache | None = None, name: str = "",
              max_labels: int = DEFAULT_MAX_LABELS) -> TemplateHead:
        classes = check_labels(classes, max_labels)
        templates = list(templates)
        if not templates:
            raise InvalidInput("no prompt templates given")
        for t in templates:
            if "{}" not in t:
                raise InvalidInput(f"template {t!r} has no '{{}}' placeholder for the class name")
        prompts = [t.replace("{}", c) for c in classes for t in templates]
        emb = _encode(model, prompts, cache).reshape(len(classes), len(templates), -1).mean(1)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        return cls(classes, templates, emb.astype(np.float32), model.fingerprint, name)

    def cosines(self, image_emb: np.ndarray, dimensions: int | None = None) -> np.ndarray:
        return truncate(image_emb, dimensions) @ truncate(self.embeddings, dimensions).T

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "classes": self.classes, "templates": self.templates,
                "fingerprint": self.fingerprint}


@dataclass
class DescriptorHead:
    classes: list[str]
    descriptors: dict[str, list[str]]
    prompts: list[str]  # flattened, class-major
    embeddings: np.ndarray  # [sum_k, D], one row per descriptor prompt
    owners: np.ndarray  # class index of each row
    fingerprint: str
    name: str = ""
    prompt_format: dict[str, str] = field(default_factory=lambda: {"label_before": "", "between": ", ", "after": ""})
    kind: str = "descriptors"

    @classmethod
    def build(cls, model: DualEncoder, descriptors: dict[str, list[str]], cache: TextEmbeddingCache | None = None,
              name: str = "", label_before: str = "", between: str = ", ", after: str = "",
              max_labels: int = DEFAULT_MAX_LABELS) -> DescriptorHead:
        descriptors = validate_descriptors(descriptors)
        classes = check_labels(list(descriptors), max_labels)
        prompts = [descriptor_prompt(c, d, label_before, between, after) for c in classes for d in descriptors[c]]
        owners = np.array([k for k, c in enumerate(classes) for _ in descriptors[c]])
        emb = _encode(model, prompts, cache)
        fmt = {"label_before": label_before, "between": between, "after": after}
        return cls(classes, descriptors, prompts, emb, owners, model.fingerprint, name, fmt)

    def _sims(self, image_emb: np.ndarray, dimensions: int | None) -> np.ndarray:
        return truncate(image_emb, dimensions) @ truncate(self.embeddings, dimensions).T  # [N, sum_k]

    def cosines(self, image_emb: np.ndarray, dimensions: int | None = None) -> np.ndarray:
        """Mean descriptor cosine per class (the paper's score), [N, C]."""
        sims = self._sims(image_emb, dimensions)
        sums = np.zeros((len(sims), len(self.classes)), dtype=np.float64)
        np.add.at(sums.T, self.owners, sims.T)
        return (sums / np.bincount(self.owners, minlength=len(self.classes))).astype(np.float32)

    def explain(self, image_emb: np.ndarray, class_index: int, dimensions: int | None = None
                ) -> list[dict[str, Any]]:
        """The class's descriptors sorted by their cosine to the image (highest first), at the same
        Matryoshka ``dimensions`` as the class score."""
        rows = np.nonzero(self.owners == class_index)[0]
        image = truncate(np.asarray(image_emb, np.float32).reshape(1, -1), dimensions)
        sims = (image @ truncate(self.embeddings[rows], dimensions).T)[0]
        descs = self.descriptors[self.classes[class_index]]
        order = np.argsort(-sims)
        return [{"descriptor": descs[i], "similarity": round(float(sims[i]), 4)} for i in order]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "classes": self.classes, "descriptors": self.descriptors,
                "prompt_format": self.prompt_format, "fingerprint": self.fingerprint}


Head = TemplateHead | DescriptorHead


def save_head(head: Head, folder: Path) -> Path:
    """Write ``<name>.json`` (what the head is) and ``<name>.npz`` (its text embeddings)."""
    if not head.name:
        raise InvalidInput("a head needs a name to be saved")
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"embeddings": head.embeddings}
    if isinstance(head, DescriptorHead):
        arrays["owners"] = head.owners
    tmp = folder / f".{head.name}.npz.tmp.npz"
    np.savez(tmp, **arrays)
    tmp.replace(folder / f"{head.name}.npz")
    meta = folder / f"{head.name}.json"
    meta.with_suffix(".json.tmp").write_text(json.dumps(head.to_json(), indent=1))
    meta.with_suffix(".json.tmp").replace(meta)
    return meta


def load_head(path: Path) -> Head:
    meta = json.loads(path.read_text())
    arrays = np.load(path.with_suffix(".npz"))
    if meta["kind"] == "templates":
        return TemplateHead(meta["classes"], meta["templates"], arrays["embeddings"], meta["fingerprint"],
                            meta["name"])
    fmt = meta["prompt_format"]
    prompts = [descriptor_prompt(c, d, fmt["label_before"], fmt["between"], fmt["after"])
               for c in meta["classes"] for d in meta["descriptors"][c]]
    return DescriptorHead(meta["classes"], meta["descriptors"], prompts, arrays["embeddings"], arrays["owners"],
                          meta["fingerprint"], meta["name"], fmt)
