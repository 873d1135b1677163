"""transformers' own OWL-ViT / OWLv2 detection path, the reference vlserve's detector is held to:
``processor(...)`` + the model + ``post_process_grounded_object_detection`` for text queries, and
``image_guided_detection`` + ``post_process_image_guided_detection`` for an example image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

QUERIES = ["a red star", "a photo of a blue circle", "a small green triangle next to a square"]


def load(folder: Path, family: str):
    from transformers import AutoProcessor, Owlv2ForObjectDetection, OwlViTForObjectDetection

    cls = {"owlvit": OwlViTForObjectDetection, "owlv2": Owlv2ForObjectDetection}[family]
    return AutoProcessor.from_pretrained(folder), cls.from_pretrained(folder).eval()


def by_score(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """``arrays`` (the second is the scores) in order of decreasing score."""
    order = np.argsort(-np.asarray(arrays[1]), kind="stable")
    return tuple(np.asarray(a)[order] for a in arrays)


@torch.no_grad()
def text_detections(reference, images: list[np.ndarray], queries: list[str], threshold: float = 0.0
                    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per image: (boxes, scores, query indices), best first."""
    proc, model = reference
    pil = [Image.fromarray(a) for a in images]
    outputs = model(**proc(text=[queries] * len(pil), images=pil, return_tensors="pt"))
    found = proc.post_process_grounded_object_detection(outputs, threshold=threshold,
                                                        target_sizes=[(im.height, im.width) for im in pil])
    return [by_score(f["boxes"].numpy(), f["scores"].numpy(), f["labels"].numpy()) for f in found]


@torch.no_grad()
def image_guided_detections(reference, images: list[np.ndarray], query: np.ndarray, nms: float = 0.3
                            ) -> tuple[list[tuple[np.ndarray, np.ndarray]], torch.Tensor]:
    """Per image: (boxes, transformers' "scores", i.e. relative scores), best first; and the raw logits."""
    proc, model = reference
    targets = [Image.fromarray(a) for a in images]
    inputs = proc(images=targets, query_images=[Image.fromarray(query)] * len(targets), return_tensors="pt")
    outputs = model.image_guided_detection(**inputs)  # one query image per target image
    sizes = torch.tensor([(im.height, im.width) for im in targets])
    found = proc.post_process_image_guided_detection(outputs, threshold=0.0, nms_threshold=nms, target_sizes=sizes)
    return [by_score(f["boxes"].numpy(), f["scores"].numpy()) for f in found], outputs.logits
