"""Zero-shot and retrieval evaluation (engine code: arrays in, metrics out)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from vlserve.matryoshka import truncate
from vlserve.models.base import DualEncoder
from vlserve.zeroshot.heads import DescriptorHead, TemplateHead

Progress = Callable[[int], None]


def embed_images(model: DualEncoder, images: Sequence[Any], batch: int = 64,
                 progress: Progress | None = None) -> np.ndarray:
    out = []
    for start in range(0, len(images), batch):
        out.append(model.encode_images(list(images[start:start + batch])))
        if progress:
            progress(len(out[-1]))
    return np.concatenate(out)


def class_embeddings(model: DualEncoder, classes: Sequence[str], templates: Sequence[str]) -> np.ndarray:
    """Class embeddings by the template-ensemble rule of :class:`~vlserve.zeroshot.heads.TemplateHead`."""
    return TemplateHead.build(model, classes, templates).embeddings


def zero_shot_report(image_emb: np.ndarray, class_emb: np.ndarray, labels: Sequence[str], classes: Sequence[str],
                     dims: Sequence[int]) -> dict[str, Any]:
    """Accuracy of nearest-class-embedding prediction at each Matryoshka dim."""
    scores = [truncate(image_emb, d) @ truncate(class_emb, d).T for d in dims]
    return accuracy_report(scores, labels, classes, dims)


def descriptor_report(head: DescriptorHead, image_emb: np.ndarray, labels: Sequence[str], dims: Sequence[int]
                      ) -> dict[str, Any]:
    """Accuracy of classification by description (mean descriptor cosine) at each Matryoshka dim."""
    return accuracy_report([head.cosines(image_emb, d) for d in dims], labels, head.classes, dims)


def accuracy_report(scores_by_dim: Sequence[np.ndarray], labels: Sequence[str], classes: Sequence[str],
                    dims: Sequence[int]) -> dict[str, Any]:
    """Top-1/top-5 and per-class top-1 from class scores ([N, C] per dim)."""
    classes = list(classes)
    truth = np.array([classes.index(y) for y in labels])
    report: dict[str, Any] = {"n": len(labels), "classes": classes, "chance": 1 / len(classes), "by_dim": {}}
    for d, scores in zip(dims, scores_by_dim, strict=True):
        pred = scores.argmax(1)
        top5 = np.argsort(-scores, axis=1)[:, :5]
        per_class = {c: float((pred[truth == k] == k).mean()) if (truth == k).any() else None
                     for k, c in enumerate(classes)}
        report["by_dim"][str(d)] = {"top1": float((pred == truth).mean()),
                                    "top5": float((top5 == truth[:, None]).any(1).mean()),
                                    "per_class_top1": per_class}
    return report


def retrieval_report(image_emb: np.ndarray, text_emb: np.ndarray, caption_image: Sequence[int],
                     dims: Sequence[int], ks: Sequence[int] = (1, 5, 10)) -> dict[str, Any]:
    """Text->image recall@k (the caption's image in the top k) and image->text recall@k (any of the
    image's captions in the top k)."""
    owners = np.asarray(caption_image)
    out: dict[str, Any] = {"images": len(image_emb), "captions": len(text_emb), "by_dim": {}}
    for d in dims:
        sims = truncate(text_emb, d) @ truncate(image_emb, d).T  # [captions, images]
        t2i_rank = np.argsort(-sims, axis=1)
        i2t_rank = np.argsort(-sims.T, axis=1)
        res = {}
        for k in ks:
            res[f"t2i_recall@{k}"] = float((t2i_rank[:, :k] == owners[:, None]).any(1).mean())
            res[f"i2t_recall@{k}"] = float(np.mean([(owners[i2t_rank[i, :k]] == i).any()
                                                    for i in range(len(image_emb))]))
        out["by_dim"][str(d)] = res
    return out


def attribute_precision(image_emb: np.ndarray, query_emb: np.ndarray, hits: np.ndarray, dims: Sequence[int],
                        k: int = 10) -> dict[str, float]:
    """Mean precision@k of text queries, where ``hits[q, i]`` says image i satisfies query q."""
    out = {}
    for d in dims:
        top = np.argsort(-(truncate(query_emb, d) @ truncate(image_emb, d).T), axis=1)[:, :k]
        out[str(d)] = float(np.take_along_axis(hits, top, axis=1).mean())
    return out
