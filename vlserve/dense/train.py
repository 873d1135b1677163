"""Train a DenseCLIP head (:mod:`vlserve.dense.head`) on masks, the CLIP encoder frozen.

Data: toy world v2 scenes (their exact visible-pixel masks; labelled by shape, and on a share of
steps by colour, so the head learns to follow the label text rather than a fixed class list), or a
folder of ``images/NAME.(png|jpg)`` + ``masks/NAME.png`` (value ``i`` = the ``i``-th line of
``labels.txt``, 0 background, 255 ignored). A pool of images is drawn once at the head's input size
and flipped at random per step. Each step takes the whole label set or, half the time, a random
subset of 2 or more of its labels, the pixels of the labels left out becoming background: a user who
asks for "star, circle" wants the other shapes left as background.

Loss: cross-entropy of the decoder's logits (upsampled to the input size) plus 0.4 x the auxiliary
cross-entropy of the score maps ``s / τ`` (DenseCLIP's identity-head loss), both over
``[background, labels...]``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vlserve.dense.head import DenseCLIPHead, HeadConfig
from vlserve.dense.towers import normalise, pyramid, pyramid_channels, resize_whole
from vlserve.errors import InvalidInput

IGNORE = 255
AUX_WEIGHT = 0.4


@dataclass
class DenseTrainConfig:
    data: str = "toy"  # "toy" or a folder (see the module docstring)
    steps: int = 6000
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 100
    input_size: int = 128
    fpn_channels: int = 64
    label_channels: int = 32
    pool: int = 16000  # images drawn once (toy) / at most this many read (folder)
    colour_share: float = 0.25  # toy: share of steps labelled by colour
    subset_share: float = 0.5  # share of steps on a random subset of the labels
    seed: int = 0
    threads: int = 2
    eval_every: int = 500
    eval_n: int = 100
    max_seconds: float = 0.0


@dataclass
class MaskPool:
    """Images resized to the input size and their masks, one mask per labelling."""

    images: np.ndarray  # uint8 [N, S, S, 3]
    masks: dict[str, np.ndarray]  # labelling -> uint8 [N, S, S] (0 background, i: labels[i - 1], 255 ignore)
    labels: dict[str, list[str]]  # labelling -> label texts


def _resize(image: np.ndarray, masks: list[np.ndarray], size: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The image resized whole as serving resizes it (bicubic), its masks by nearest neighbour."""
    from PIL import Image

    return (resize_whole(Image.fromarray(image), (size, size)),
            [np.asarray(Image.fromarray(m).resize((size, size), Image.Resampling.NEAREST)) for m in masks])


def _toy_item(args: tuple[str, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from vlserve.toyworld.dataset import detection_scene

    split, index, size = args
    scene = detection_scene(split, index)
    img, (shape, colour) = _resize(scene.image, [scene.semantic_mask(), scene.colour_mask()], size)
    return img, shape, colour


def toy_pool(split: str, n: int, size: int, workers: int = 2, progress: Callable[[int], None] | None = None
             ) -> MaskPool:
    """``n`` toy v2 scenes of ``split`` (1-4 objects, all styles), labelled by shape and by colour."""
    from multiprocessing import get_context

    from vlserve.toyworld.scene import COLOURS, SHAPES

    images = np.zeros((n, size, size, 3), np.uint8)
    shapes = np.zeros((n, size, size), np.uint8)
    colours = np.zeros((n, size, size), np.uint8)
    jobs = [(split, i, size) for i in range(n)]
    with get_context("spawn").Pool(workers) as pool:
        for i, (img, shp, col) in enumerate(pool.imap(_toy_item, jobs, chunksize=64)):
            images[i], shapes[i], colours[i] = img, shp, col
            if progress:
                progress(1)
    return MaskPool(images, {"shape": shapes, "colour": colours},
                    {"shape": list(SHAPES), "colour": [f"{c} object" for c in COLOURS]})


def folder_pool(folder: Path, n: int, size: int) -> MaskPool:
    """A user's masks: ``images/``, ``masks/`` (same stems, PNG) and ``labels.txt``."""
    from PIL import Image

    labels_file = folder / "labels.txt"
    if not labels_file.is_file() or not (folder / "images").is_dir() or not (folder / "masks").is_dir():
        raise InvalidInput(f"{folder}: a mask folder holds images/, masks/ and labels.txt (one label per line, "
                           "mask value i = line i, 0 background, 255 ignored)", field="data")
    labels = [line.strip() for line in labels_file.read_text().splitlines() if line.strip()]
    pairs = []
    for img_path in sorted((folder / "images").iterdir()):
        mask_path = folder / "masks" / f"{img_path.stem}.png"
        if mask_path.is_file():
            pairs.append((img_path, mask_path))
    if not pairs or not labels:
        raise InvalidInput(f"{folder}: no image with a mask of the same name, or no labels", field="data")
    pairs = pairs[:n]
    images = np.zeros((len(pairs), size, size, 3), np.uint8)
    masks = np.zeros((len(pairs), size, size), np.uint8)
    for i, (img_path, mask_path) in enumerate(pairs):
        mask = np.asarray(Image.open(mask_path))
        if mask.ndim != 2 or (mask[mask != IGNORE] > len(labels)).any():
            raise InvalidInput(f"{mask_path}: a mask is one channel of values 0..{len(labels)} (or 255)",
                               field="data")
        images[i], (masks[i],) = _resize(np.asarray(Image.open(img_path).convert("RGB")), [mask], size)
    return MaskPool(images, {"labels": masks}, {"labels": labels})


def pick_labels(n_labels: int, subset: bool, rng: np.random.Generator) -> np.ndarray:
    """Indices (0-based) of the labels a step uses: all, or a random subset of at least 2."""
    if not subset or n_labels <= 2:
        return np.arange(n_labels)
    k = int(rng.integers(2, n_labels))
    return np.sort(rng.choice(n_labels, size=k, replace=False))


def remap(masks: np.ndarray, chosen: np.ndarray, n_labels: int) -> np.ndarray:
    """Masks in the labelling's indices -> indices into ``[background, chosen...]`` (labels left out
    become background; ignore stays ignore)."""
    table = np.zeros(256, np.int64)
    table[IGNORE] = IGNORE
    for new, old in enumerate(chosen):
        table[old + 1] = new + 1
    return table[masks]


def head_losses(head: DenseCLIPHead, clip: Any, tokenizer: Any, pixels: torch.Tensor, target: torch.Tensor,
                labels: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        pyr = pyramid(clip, pixels)
    text = head.encode_labels(clip, tokenizer, labels)
    logits, scores = head.read(pyr, text)
    size = target.shape[-2:]
    main = F.cross_entropy(F.interpolate(logits, size=size, mode="bilinear", align_corners=False), target,
                           ignore_index=IGNORE)
    aux = F.cross_entropy(F.interpolate(scores / head.cfg.tau, size=size, mode="bilinear", align_corners=False),
                          target, ignore_index=IGNORE)
    return main, aux


@torch.no_grad()
def pool_miou(head: DenseCLIPHead, clip: Any, tokenizer: Any, pool: MaskPool, labelling: str,
              mean: list[float], std: list[float], device: torch.device) -> float:
    """mIoU (torchmetrics, dataset-level, background included) on a pool at its stored size."""
    from torchmetrics.classification import MulticlassJaccardIndex

    labels = pool.labels[labelling]
    metric = MulticlassJaccardIndex(num_classes=len(labels) + 1, ignore_index=IGNORE)
    head.eval()
    text = head.encode_labels(clip, tokenizer, labels)
    for start in range(0, len(pool.images), 32):
        pixels = normalise(pool.images[start:start + 32], mean, std, device)
        pyr = pyramid(clip, pixels)
        logits, _ = head.read(pyr, text)
        logits = F.interpolate(logits, size=pixels.shape[-2:], mode="bilinear", align_corners=False)
        truth = torch.from_numpy(pool.masks[labelling][start:start + 32].astype(np.int64))
        metric.update(logits.argmax(1).cpu(), truth)
    head.train()
    return float(metric.compute())


def train_head(encoder: Any, out: Path, cfg: DenseTrainConfig, log_path: Path | None = None,
               progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Train a head for ``encoder`` (a loaded open_clip dual encoder) and save it to ``out``."""
    from vlserve.provenance import open_run_log, provenance

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    clip, tokenizer, device = encoder.model.float(), encoder._tokenizer, encoder.device
    visual = clip.visual
    mean, std = list(visual.image_mean), list(visual.image_std)
    channels = pyramid_channels(clip)
    dim = int(clip.text_projection.shape[1])
    log_file = open_run_log(log_path) if log_path else None

    def note(entry: dict[str, Any]) -> None:
        if log_file:
            log_file.write(json.dumps(entry) + "\n")
            log_file.flush()

    t0 = time.time()
    if cfg.data == "toy":
        pool = toy_pool("train", cfg.pool, cfg.input_size,
                        progress=(lambda k: progress("pool", k, cfg.pool)) if progress else None)
        val: MaskPool | None = toy_pool("val", cfg.eval_n, cfg.input_size)
    else:
        pool, val = folder_pool(Path(cfg.data), cfg.pool, cfg.input_size), None
    note({"pool_seconds": round(time.time() - t0, 1), "pool_images": len(pool.images)})

    hcfg = HeadConfig(level_channels=channels, embed_dim=dim, input_size=cfg.input_size,
                      fpn_channels=cfg.fpn_channels, label_channels=cfg.label_channels)
    n_ctx = len(tokenizer([hcfg.context_init])[0].nonzero()) - 2
    with torch.no_grad():  # an untrained head's context is the template itself (see head.py)
        ctx = clip.token_embedding(tokenizer([hcfg.context_init]).to(device))[0, 1:1 + n_ctx]
        background = clip.encode_text(tokenizer([f"{hcfg.context_init} background"]).to(device))[0]
    head = DenseCLIPHead(hcfg, ctx, background).to(device).train()
    clip.requires_grad_(False)
    decay = [p for n, p in head.named_parameters() if p.ndim >= 2 and n not in ("context",)]
    rest = [p for n, p in head.named_parameters() if not (p.ndim >= 2 and n not in ("context",))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=cfg.lr)

    def lr_at(step: int, elapsed: float) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        done = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        if cfg.max_seconds:
            done = max(done, elapsed / cfg.max_seconds)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))

    t1 = time.time()
    labellings = list(pool.masks)
    history: list[dict[str, Any]] = []
    for step in range(cfg.steps):
        elapsed = time.time() - t1
        labelling = "colour" if ("colour" in labellings and rng.random() < cfg.colour_share) else labellings[0]
        labels_all = pool.labels[labelling]
        chosen = pick_labels(len(labels_all), rng.random() < cfg.subset_share, rng)
        idx = rng.choice(len(pool.images), size=cfg.batch_size, replace=False)
        images, masks = pool.images[idx], pool.masks[labelling][idx]
        flip = rng.random(cfg.batch_size) < 0.5
        images = np.where(flip[:, None, None, None], images[:, :, ::-1], images)
        masks = np.where(flip[:, None, None], masks[:, :, ::-1], masks)
        target = torch.from_numpy(remap(masks, chosen, len(labels_all))).to(device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, elapsed)
        main, aux = head_losses(head, clip, tokenizer, normalise(images, mean, std, device),
                                target, [labels_all[i] for i in chosen])
        loss = main + AUX_WEIGHT * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        opt.step()
        entry: dict[str, Any] = {"step": step + 1, "loss": round(float(main.detach()), 4),
                                 "aux": round(float(aux.detach()), 4), "labelling": labelling,
                                 "elapsed_s": round(time.time() - t1, 1)}
        stop = bool(cfg.max_seconds) and time.time() - t1 > cfg.max_seconds and step + 1 < cfg.steps
        if stop:
            entry["stopped_early"] = f"time limit {cfg.max_seconds:.0f} s reached at step {step + 1}"
        if val is not None and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps or stop):
            entry["val_mIoU_shape"] = round(pool_miou(head, clip, tokenizer, val, "shape", mean, std, device), 4)
            entry["val_mIoU_colour"] = round(pool_miou(head, clip, tokenizer, val, "colour", mean, std, device), 4)
        history.append(entry)
        if len(entry) > 5 or (step + 1) % 25 == 0:
            note(entry)
        if progress:
            progress("train", step + 1, cfg.steps)
        if stop:
            break
    seconds = time.time() - t0
    summary = {"config": asdict(cfg), "seconds": round(seconds, 1), "train_seconds": round(time.time() - t1, 1),
               "steps_done": len(history), "final": history[-1], "device": str(device), "provenance": provenance()}
    head.save(out, encoder.spec.raw, encoder.fingerprint, {"train": summary})
    note({"summary": summary})
    if log_file:
        log_file.close()
    return summary
