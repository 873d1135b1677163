"""From dense embeddings and label embeddings to score maps and a segmentation.

A label's score at a location is the cosine between the location's dense embedding and the label's
text embedding (both L2-normalised, as the model's own image-text score is); score maps are
upsampled bilinearly from the tower's grid to the requested size (corners not aligned, as
segmentation heads upsample). The segmentation is the argmax label per pixel; with a background
threshold, pixels whose best score is below it get the background index ``-1``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BACKGROUND = -1


def score_maps(dense: torch.Tensor, labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Cosine scores ``[N, L, H, W]`` of ``dense`` ``[N, D, h, w]`` against ``labels`` ``[L, D]``,
    upsampled to ``size`` (H, W)."""
    dense = F.normalize(dense.float(), dim=1)
    labels = F.normalize(labels.float().to(dense.device), dim=-1)
    scores = torch.einsum("ndhw,ld->nlhw", dense, labels)
    if tuple(scores.shape[-2:]) != tuple(size):
        scores = F.interpolate(scores, size=size, mode="bilinear", align_corners=False)
    return scores


def segment(scores: torch.Tensor, background_threshold: float | None = None) -> torch.Tensor:
    """The best label per pixel, ``[N, H, W]`` int64; ``BACKGROUND`` where the best score is under
    ``background_threshold``."""
    best, index = scores.max(dim=1)
    if background_threshold is not None:
        index = torch.where(best < background_threshold, torch.full_like(index, BACKGROUND), index)
    return index
