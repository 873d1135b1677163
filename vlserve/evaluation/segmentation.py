"""Pixel-text segmentation quality on toy world v2 scenes: mean IoU over the 6 shapes and the
background (torchmetrics, dataset-level: see :func:`_miou`); and, colour-conditioned, over the 8
colours ("a red object") and the background.

Each method labels every pixel with the best of the shape labels (``"a photo of a {shape}"``,
through the model's text tower) or, where its best score is below a background threshold, as
background. Training-free methods have no threshold of their own, so one is chosen per method on
validation scenes (the value on a fixed grid that gives the best validation mIoU, scored at the
model's input size) and then used unchanged on the evaluation scenes, scored at each scene's own
size: the reported figure never sees its own labels twice. The DenseCLIP head (``denseclip``) has
its own learned background label, so no threshold is chosen for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from vlserve.dense.maps import segment
from vlserve.dense.towers import Method

TEMPLATE = "a photo of a {}"
THRESHOLDS = tuple(round(0.02 * i, 2) for i in range(51))  # 0.00 .. 1.00
ProgressFn = Callable[[int], None]


def _scenes(split: str, n: int) -> list[Any]:
    from vlserve.toyworld.dataset import detection_scene

    return [detection_scene(split, i) for i in range(n)]


def _scores(encoder: Any, scenes: Sequence[Any], labels: np.ndarray, method: Method, upscale: int,
            size: tuple[int, int] | None, progress: ProgressFn | None) -> list[torch.Tensor]:
    """Per scene, the label scores ``[L, H, W]`` at ``size`` (default: the scene's own size)."""
    import torch.nn.functional as F

    from vlserve.dense.maps import score_maps
    from vlserve.dense.towers import dense_embeddings

    text = torch.from_numpy(labels)
    out = []
    for start in range(0, len(scenes), 32):
        chunk = scenes[start:start + 32]
        pixels = encoder.preprocess([s.image for s in chunk]).to(encoder.device, encoder.dtype)
        if upscale != 1:
            pixels = F.interpolate(pixels, scale_factor=upscale, mode="bicubic", align_corners=False)
        dense = dense_embeddings(encoder.model, pixels, method).float().cpu()
        for s, d in zip(chunk, dense, strict=True):
            out.append(score_maps(d[None], text, size or s.image.shape[:2])[0])
        if progress:
            progress(len(chunk))
    return out


def _truth(scene: Any, size: tuple[int, int] | None = None, labelling: str = "shape") -> torch.Tensor:
    mask = scene.semantic_mask() if labelling == "shape" else scene.colour_mask()
    if size is not None and mask.shape != size:
        from PIL import Image

        mask = np.asarray(Image.fromarray(mask).resize(size[::-1], Image.Resampling.NEAREST))
    return torch.from_numpy(mask.astype(np.int64))


def _miou(scores: torch.Tensor | Sequence[torch.Tensor], truth: torch.Tensor | Sequence[torch.Tensor],
          threshold: float, n_labels: int) -> tuple[float, list[float]]:
    """mIoU of the segmentations that ``scores`` give at ``threshold``: stacked (one update) or one
    scene each."""
    if isinstance(scores, torch.Tensor):
        return _miou_of(segment(scores, threshold), truth, n_labels)
    return _miou_of([segment(sc[None], threshold)[0] for sc in scores], truth, n_labels)


def _denseclip(pixel_text: Any, scenes: Sequence[Any], labels: list[str], progress: ProgressFn | None
               ) -> list[torch.Tensor]:
    """The DenseCLIP head's segmentation of each scene at its own size, background ``-1``."""
    out = []
    for start in range(0, len(scenes), 32):
        chunk = scenes[start:start + 32]
        for r in pixel_text.segment([s.image for s in chunk], labels, "denseclip"):
            out.append(torch.from_numpy(r.segmentation).long())
        if progress:
            progress(len(chunk))
    return out


def _miou_of(predictions: torch.Tensor | Sequence[torch.Tensor], truth: torch.Tensor | Sequence[torch.Tensor],
             n_labels: int) -> tuple[float, list[float]]:
    """mIoU of label predictions (background ``-1``), stacked (one update) or one scene each.

    Dataset-level, as segmentation benchmarks report it: intersections and unions of each class are
    summed over all pixels of all scenes (torchmetrics' confusion-matrix ``MulticlassJaccardIndex``),
    then the per-class IoUs averaged."""
    from torchmetrics.classification import MulticlassJaccardIndex

    metric = MulticlassJaccardIndex(num_classes=n_labels + 1, average="none")
    if isinstance(predictions, torch.Tensor) and isinstance(truth, torch.Tensor):
        metric.update(predictions + 1, truth)  # background -1 -> 0, label i -> i + 1
    else:
        for p, t in zip(predictions, truth, strict=True):
            metric.update(p[None] + 1, t[None])
    per_class = metric.compute()
    return float(per_class.mean()), [float(v) for v in per_class]


def toy_segmentation_report(encoder: Any, methods: Sequence[str], split: str = "test", n: int = 300,
                            calibrate_n: int = 100, upscale: int = 1, head_dir: Any = None,
                            labellings: Sequence[str] = ("shape", "colour"),
                            progress: ProgressFn | None = None) -> dict[str, Any]:
    """mIoU of each dense ``method`` on ``n`` toy scenes of ``split`` (1-4 objects, all styles), labelled
    by shape and by colour; training-free methods' background threshold chosen on ``calibrate_n``
    validation scenes; ``denseclip`` reads the head in ``head_dir``."""
    from vlserve.toyworld.scene import COLOURS, SHAPES

    names = {"shape": list(SHAPES), "colour": [f"{c} object" for c in COLOURS]}
    val, test = _scenes("val", calibrate_n), _scenes(split, n)
    report: dict[str, Any] = {"split": split, "n_scenes": n, "calibration": f"val, {calibrate_n} scenes",
                              "classes": ["background", *SHAPES], "label_template": TEMPLATE,
                              "colour_classes": ["background", *names["colour"]],
                              "upscale": upscale,
                              "metric": "torchmetrics MulticlassJaccardIndex, per class over all pixels, then mean",
                              "methods": {}, "colour_methods": {}}
    calib_size = tuple(encoder.image_size)
    pixel_text = None
    if "denseclip" in methods:
        from vlserve.dense.segmenter import PixelText

        pixel_text = PixelText(encoder, head_dir)
        report["head"] = {k: pixel_text.head_meta.get(k) for k in ("encoder_spec", "encoder_fingerprint")}
        report["head"]["dir"] = str(head_dir)
    for labelling in labellings:
        classes = ["background", *names[labelling]]
        key = "methods" if labelling == "shape" else "colour_methods"
        test_truth = [_truth(s, None, labelling) for s in test]
        val_truth = torch.stack([_truth(s, calib_size, labelling) for s in val])
        labels = encoder.encode_texts([TEMPLATE.format(x) for x in names[labelling]])
        for method in methods:
            if method == "denseclip":
                miou, per_class = _miou_of(_denseclip(pixel_text, test, names[labelling], progress), test_truth,
                                           len(names[labelling]))
                entry: dict[str, Any] = {"mIoU": round(miou, 4), "background": "the head's learned background label",
                                         "labels": "raw label text, the head's learned context before it"}
            else:
                m: Method = method  # type: ignore[assignment]
                # calibration at the model's input size, all validation scenes in one update per threshold
                val_scores = torch.stack(_scores(encoder, val, labels, m, upscale, calib_size, progress))
                by_threshold = {t: _miou(val_scores, val_truth, t, len(names[labelling]))[0] for t in THRESHOLDS}
                threshold = max(by_threshold, key=lambda t: by_threshold[t])
                miou, per_class = _miou(_scores(encoder, test, labels, m, upscale, None, progress), test_truth,
                                        threshold, len(names[labelling]))
                entry = {"mIoU": round(miou, 4), "background_threshold": threshold,
                         "val_mIoU_at_input_size": round(by_threshold[threshold], 4)}
            entry["IoU_per_class"] = {c: round(v, 4) for c, v in zip(classes, per_class, strict=True)}
            report[key][method] = entry
    return report
