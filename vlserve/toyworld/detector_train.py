"""Train the toy OWL-ViT detector on toy world v2, following the OWL-ViT recipe (Minderer et al. 2022).

Stage 1, contrastive pre-training: the towers (a ViT image tower and a CLIP text tower) learn
image-caption alignment on v2 scenes with the soft-target CLIP loss used for the toy dual encoder
(a caption is a positive for every image it is true of). The first share of the stage is drawn the
easy way (flat fills, nearly upright shapes), as for the toy dual encoder.

Stage 2, detection fine-tuning of the whole model on multi-object v2 scenes with exact boxes:
every patch predicts a box and a score per text query ("a red star", "a photo of a star", ...);
predictions are matched one-to-one to the ground-truth objects by the Hungarian algorithm (cost:
class probability, L1 and generalised IoU of the boxes, DETR's weights), then the loss is a
sigmoid focal loss over all patches and queries (a matched patch is positive for every query its
object satisfies: its shape and its colour+shape) plus L1 + GIoU on the matched boxes.

Both stages are budgeted in wall time: the learning rate follows a cosine over the stage's minutes
(so a slower machine does fewer steps but still anneals), or over its step count without a budget.
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

from vlserve.models.detector import center_to_corners
from vlserve.toyworld.dataset import detection_scene, sample
from vlserve.toyworld.owl import (
    IMAGE_SIZE,
    MAX_TOKENS,
    OWL_CFG,
    PATCH,
    build_detector,
    load_clip_towers,
    save_clip_towers,
    save_detector,
    text_tower_from_open_clip,
)
from vlserve.toyworld.queries import COLOUR_SHAPES
from vlserve.toyworld.scene import COLOURS, SHAPES
from vlserve.toyworld.train import contrastive_loss, normalise_images

TEMPLATES = ("a {}", "a photo of a {}", "an image of a {}")


def detection_queries(template: str = "a photo of a {}") -> list[str]:
    """The query set: every shape, then every colour+shape ("a photo of a red star")."""
    return [template.format(s) for s in [*SHAPES, *COLOUR_SHAPES]]


@dataclass
class DetectorTrainConfig:
    pretrain_steps: int = 1500
    pretrain_minutes: float = 0.0  # wall-time budget of stage 1 (0: run the steps)
    pretrain_batch: int = 128
    pretrain_lr: float = 1e-3
    easy_share: float = 0.3  # fraction of stage 1 drawn the easy way, then easy scenes fade out over as long
    detect_steps: int = 2000
    detect_minutes: float = 0.0
    detect_batch: int = 32
    detect_lr: float = 5e-4
    weight_decay: float = 0.05
    warmup: int = 100
    seed: int = 0
    threads: int = 0
    workers: int = 1
    eval_every: int = 200
    init_towers: str | None = None  # skip stage 1: start from a ``save_clip_towers`` folder of an earlier run
    text_from: str | None = None  # an open_clip toy CLIP folder whose text tower is copied in and locked (LiT)
    distil: float = 0.0  # stage 1: weight of 1 - cos(ViT image embedding, the text_from model's image embedding)
    per_object: int = 1  # stage 2: patches matched to each object (1: OWL-ViT's one-to-one)
    per_object_until: float = 0.5  # share of stage 2 after which matching is one-to-one again
    bf16: bool = True  # bfloat16 autocast for the forward passes (CPUs with native bf16 run it faster)
    reuse: int = 1  # steps per drawn batch, each under another of the square's 8 rotations/flips
    token_labels: float = 0.0  # stage 1: weight of per-patch shape and colour classification (auxiliary heads)
    dense_distil: float = 0.0  # stage 1: weight of per-patch feature distillation from the text_from ResNet's stages


def _pixels(images: list[np.ndarray]) -> np.ndarray:
    """Square resize to the input side (bicubic), uint8 [N, S, S, 3]; the processor's resize for toy images."""
    from PIL import Image

    out = []
    for im in images:
        if im.shape[:2] != (IMAGE_SIZE, IMAGE_SIZE):
            im = np.asarray(Image.fromarray(im).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC))
        out.append(im)
    return np.stack(out)


def patch_labels(mask: np.ndarray, min_cover: float = 0.2) -> np.ndarray:
    """A label mask (0 background, 1.. classes) at the detector's patch grid: each patch takes the class
    covering most of it, or background when no class covers ``min_cover`` of it."""
    from PIL import Image

    grid = IMAGE_SIZE // PATCH
    if mask.shape != (IMAGE_SIZE, IMAGE_SIZE):
        mask = np.asarray(Image.fromarray(mask).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.NEAREST))
    n = int(mask.max()) + 1
    cover = np.eye(max(n, 2), dtype=np.float32)[mask].reshape(grid, PATCH, grid, PATCH, -1).mean((1, 3))[..., 1:]
    labels = cover.argmax(-1) + 1
    labels[cover.max(-1) < min_cover] = 0
    return labels.astype(np.int64)


def dihedral(step: int) -> tuple[int, bool]:
    """The rotation (quarter turns) and flip used at ``step``: all 8 symmetries of the square in turn."""
    return step % 4, bool((step // 4) % 2)


def turn_images(images: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """[N, H, W, ...] turned by ``k`` quarter turns (numpy's rot90, anticlockwise), then mirrored left-right."""
    out = np.rot90(images, k, axes=(1, 2))
    return np.ascontiguousarray(out[:, :, ::-1] if flip else out)


def turn_boxes(cxcywh: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """Normalised (cx, cy, w, h) boxes moved the way :func:`turn_images` moves the pixels."""
    cx, cy, w, h = cxcywh.unbind(-1)
    for _ in range(k % 4):  # rot90 anticlockwise: x' = y, y' = 1 - x
        cx, cy, w, h = cy, 1 - cx, h, w
    if flip:
        cx = 1 - cx
    return torch.stack([cx, cy, w, h], -1)


class _Stream(torch.utils.data.Dataset):
    """Batch ``i`` of a stage, a pure function of (seed, stage, i) (drawn in a worker process)."""

    def __init__(self, cfg: DetectorTrainConfig, stage: str, tokenize: Callable[[list[str]], dict[str, torch.Tensor]]):
        self.cfg, self.stage, self.tokenize = cfg, stage, tokenize

    def __len__(self) -> int:
        return 10**9

    def _easy(self, i: int) -> float:
        i *= max(1, self.cfg.reuse)  # batch i is trained on from step i * reuse
        hold = self.cfg.easy_share * self.cfg.pretrain_steps
        return 1.0 if i < hold else max(0.0, 1.0 - (i - hold) / max(1.0, hold))

    def __getitem__(self, i: int) -> dict[str, Any]:
        cfg = self.cfg
        base = cfg.seed * 10_000_000
        if self.stage == "pretrain":
            easy = self._easy(i)
            batch = [sample("train", base + 5_000_000 + i * cfg.pretrain_batch + b, easy=easy)
                     for b in range(cfg.pretrain_batch)]
            positives = torch.tensor([[s_j.captions[0][1].satisfied_by(s_i.scene.objects) for s_j in batch]
                                      for s_i in batch], dtype=torch.float32)
            out = {"images": _pixels([s.scene.image for s in batch]), "positives": positives,
                   **self.tokenize([s.captions[0][0] for s in batch])}
            if cfg.token_labels:
                out["shape_grid"] = np.stack([patch_labels(s.scene.semantic_mask()) for s in batch])
                out["colour_grid"] = np.stack([patch_labels(s.scene.colour_mask()) for s in batch])
            return out
        scenes = [detection_scene("train", base + i * cfg.detect_batch + b) for b in range(cfg.detect_batch)]
        targets = []
        for s in scenes:
            side = s.image.shape[0]
            boxes = torch.tensor([o.box for o in s.objects], dtype=torch.float32) / side
            cxcywh = torch.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
                                  boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1)
            # query indices each object satisfies: its shape, and its colour+shape
            pos = torch.tensor([[SHAPES.index(o.shape), len(SHAPES) + COLOUR_SHAPES.index(f"{o.colour} {o.shape}")]
                                for o in s.objects])
            targets.append({"boxes": cxcywh, "queries": pos})
        template = TEMPLATES[int(np.random.default_rng([cfg.seed, i]).integers(len(TEMPLATES)))]
        return {"images": _pixels([s.image for s in scenes]), "targets": targets,
                **self.tokenize(detection_queries(template))}


def detection_loss(logits: torch.Tensor, boxes: torch.Tensor, targets: list[dict[str, torch.Tensor]],
                   weights: tuple[float, float, float] = (2.0, 5.0, 2.0),
                   per_object: int = 1) -> tuple[torch.Tensor, dict[str, float]]:
    """Hungarian matching, then sigmoid focal loss (all patches x queries) + L1 + GIoU (matched boxes).

    ``per_object`` > 1 matches each object to that many patches (the assignment over the cost
    matrix with every object's column repeated; one-to-many matching as in H-DETR/Group DETR), which
    gives the class head several positives per object early on; NMS removes the duplicates.

    ``logits`` [B, P, Q], ``boxes`` [B, P, 4] (cx, cy, w, h in [0, 1]); each target holds ``boxes``
    [n, 4] and ``queries`` [n, k] (the query indices its object is a positive for)."""
    from scipy.optimize import linear_sum_assignment
    from torchvision.ops import generalized_box_iou, sigmoid_focal_loss

    w_cls, w_l1, w_giou = weights
    cls_target = torch.zeros_like(logits)
    pred_boxes, true_boxes = [], []
    prob = logits.detach().sigmoid()
    for b, t in enumerate(targets):
        n = len(t["boxes"])
        if not n:
            continue
        p_obj = prob[b][:, t["queries"]].mean(-1)  # [P, n]
        cost = (-w_cls * p_obj + w_l1 * torch.cdist(boxes[b].detach(), t["boxes"], p=1)
                - w_giou * generalized_box_iou(center_to_corners(boxes[b].detach()), center_to_corners(t["boxes"])))
        repeat = max(1, min(per_object, len(cost) // n))
        column_object = torch.arange(n).repeat(repeat)
        rows, cols = linear_sum_assignment(cost[:, column_object].numpy())
        cols = column_object[torch.as_tensor(cols)].numpy()
        for r, c in zip(rows, cols, strict=True):
            cls_target[b, r, t["queries"][c]] = 1.0
        pred_boxes.append(boxes[b, torch.as_tensor(rows)])
        true_boxes.append(t["boxes"][torch.as_tensor(cols)])
    pb, tb = torch.cat(pred_boxes), torch.cat(true_boxes)
    n_boxes = max(1, len(pb))  # matched (patch, object) pairs
    l_cls = sigmoid_focal_loss(logits, cls_target, alpha=0.25, gamma=2.0, reduction="sum") / n_boxes
    l_l1 = F.l1_loss(pb, tb, reduction="sum") / n_boxes
    l_giou = (1 - torch.diag(generalized_box_iou(center_to_corners(pb), center_to_corners(tb)))).sum() / n_boxes
    loss = w_cls * l_cls + w_l1 * l_l1 + w_giou * l_giou
    return loss, {"cls": round(float(l_cls.detach()), 4), "l1": round(float(l_l1.detach()), 4),
                  "giou": round(float(l_giou.detach()), 4)}


def detect_forward(model: Any, pixel_values: torch.Tensor, input_ids: torch.Tensor,
                   attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """OWL-ViT's own heads on one shared query set: logits [B, P, Q] and boxes [B, P, 4] (cxcywh)."""
    feature_map, _ = model.image_embedder(pixel_values=pixel_values)
    b, h, w, d = feature_map.shape
    feats = feature_map.reshape(b, h * w, d)
    queries = model.owlvit.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output
    logits, _ = model.class_predictor(feats, queries[None].expand(b, -1, -1), None)
    return logits, model.box_predictor(feats, feature_map)


def _autocast(cfg: DetectorTrainConfig) -> Any:
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in named if not (p.ndim >= 2 and "embedding" not in n)]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


class _Schedule:
    """Warm-up then cosine, over wall time when ``minutes`` is set, else over ``steps``."""

    def __init__(self, lr: float, steps: int, minutes: float, warmup: int) -> None:
        self.lr, self.steps, self.seconds, self.warmup = lr, steps, minutes * 60, warmup
        self.t0 = time.time()

    def progress(self, step: int) -> float:
        return (time.time() - self.t0) / self.seconds if self.seconds else step / self.steps

    def done(self, step: int) -> bool:
        return self.progress(step) >= 1.0

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        return self.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, self.progress(step))))


def train_detector(out_detector: Path, out_towers: Path, cfg: DetectorTrainConfig, log_path: Path | None = None,
                   validate: Callable[[Any], dict[str, Any]] | None = None,
                   progress: Callable[[str, int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Both stages from random weights; writes the detector (``toy-owlvit`` layout) and the towers (``toy-vit``).

    ``validate(model)`` (given by the caller, e.g. COCO AP50 on validation scenes) runs every
    ``eval_every`` detection steps and at the end; its result is logged."""
    from open_clip.tokenizer import SimpleTokenizer

    from vlserve.provenance import open_run_log, provenance

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = build_detector(cfg.seed).train()
    clip_tok = SimpleTokenizer(context_length=MAX_TOKENS)

    def tokenize(texts: list[str]) -> dict[str, torch.Tensor]:
        ids = clip_tok(texts)  # zero-padded; "!" is id 0 in CLIP's BPE, OWL-ViT's pad token
        return {"input_ids": ids, "attention_mask": (ids != 0).long()}

    log_file = open_run_log(log_path) if log_path else None
    log: list[dict[str, Any]] = []

    def record(entry: dict[str, Any]) -> None:
        log.append(entry)
        if log_file and ("val" in entry or entry["step"] % 25 == 0):
            log_file.write(json.dumps(entry) + "\n")
            log_file.flush()
        if progress:
            progress(entry["stage"], entry["step"], entry)

    def loader(stage: str) -> Any:
        return iter(torch.utils.data.DataLoader(_Stream(cfg, stage, tokenize), batch_size=None, shuffle=False,
                                                num_workers=cfg.workers, prefetch_factor=4 if cfg.workers else None,
                                                worker_init_fn=lambda _: torch.set_num_threads(1)))

    t_start = time.time()
    towers_from: dict[str, Any] | None = None
    text_source: dict[str, Any] | None = None
    teacher = None
    if (cfg.distil or cfg.dense_distil) and not cfg.text_from:
        raise ValueError("distillation needs a teacher: give text_from (the toy CLIP folder)")
    if cfg.init_towers:
        towers_from = {"folder": cfg.init_towers, **load_clip_towers(model, Path(cfg.init_towers))}
    if cfg.text_from:
        # LiT (Zhai et al. 2022): a contrastively trained text tower, locked; only the image side learns
        text_source = text_tower_from_open_clip(model, Path(cfg.text_from))
        for p in (*model.owlvit.text_model.parameters(), *model.owlvit.text_projection.parameters()):
            p.requires_grad_(False)
        if cfg.distil or cfg.dense_distil:
            teacher = _ResNetTeacher(Path(cfg.text_from))
    # stage 1: contrastive towers
    clip = model.owlvit
    width = OWL_CFG["vision_config"]["hidden_size"]
    # auxiliary per-patch classifiers (stage 1 only, not saved): dense labels from the exact masks
    aux = torch.nn.ModuleDict({"shape": torch.nn.Linear(width, len(SHAPES) + 1),
                               "colour": torch.nn.Linear(width, len(COLOURS) + 1)})
    if teacher is not None:  # adapters from the ViT's tokens to the teacher's stage features
        aux.update({stage: torch.nn.Linear(width, channels) for stage, channels in teacher.channels.items()})
    groups = [*_param_groups(clip, cfg.weight_decay), {"params": list(aux.parameters()), "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg.pretrain_lr, betas=(0.9, 0.98))
    sched = _Schedule(cfg.pretrain_lr, cfg.pretrain_steps, cfg.pretrain_minutes, cfg.warmup)
    batches, step = loader("pretrain"), 0
    while not towers_from and not sched.done(step) and (cfg.pretrain_minutes or step < cfg.pretrain_steps):
        batch = next(batches)
        for _ in range(max(1, cfg.reuse)):
            for g in opt.param_groups:
                g["lr"] = sched(step)
            k, flip = dihedral(step) if cfg.reuse > 1 else (0, False)
            pixels = normalise_images(turn_images(batch["images"], k, flip))
            parts: dict[str, float] = {}
            with _autocast(cfg):
                vision = clip.vision_model(pixel_values=pixels, output_hidden_states=bool(cfg.dense_distil))
                img = clip.visual_projection(vision.pooler_output).float()
                with torch.no_grad():
                    txt = clip.get_text_features(input_ids=batch["input_ids"],
                                                 attention_mask=batch["attention_mask"]).pooler_output.float()
                loss = contrastive_loss(img, txt, batch["positives"], clip, (img.shape[1],), "clip")
                if teacher is not None:
                    with torch.no_grad():
                        embedding, stages = teacher(pixels)
                    if cfg.distil:
                        distil = (1 - (F.normalize(img, dim=-1) * F.normalize(embedding, dim=-1)).sum(-1)).mean()
                        loss = loss + cfg.distil * distil
                        parts["distil"] = round(float(distil.detach()), 4)
                    if cfg.dense_distil:
                        # the middle block's tokens learn the teacher's layer2, the last block's its layer3
                        hidden = vision.hidden_states
                        dense = torch.stack([F.mse_loss(aux[stage](hidden[layer][:, 1:]).float(), stages[stage])
                                             for stage, layer in (("layer2", len(hidden) // 2),
                                                                  ("layer3", len(hidden) - 1))]).sum()
                        loss = loss + cfg.dense_distil * dense
                        parts["dense_distil"] = round(float(dense.detach()), 4)
                if cfg.token_labels:
                    patches = vision.last_hidden_state[:, 1:]
                    for name in ("shape", "colour"):
                        grid = torch.from_numpy(turn_images(batch[f"{name}_grid"], k, flip)).flatten()
                        part = F.cross_entropy(aux[name](patches).float().flatten(0, 1), grid)
                        loss = loss + cfg.token_labels * part
                        parts[f"patch_{name}"] = round(float(part.detach()), 4)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([*clip.parameters(), *aux.parameters()], 1.0)
            opt.step()
            step += 1
            record({"stage": "pretrain", "step": step, "loss": round(float(loss.detach()), 4), **parts,
                    "elapsed_s": round(time.time() - t_start, 1)})
    pretrain_steps, pretrain_seconds = step, round(time.time() - t_start, 1)
    del batches
    clip.eval()
    if not towers_from:
        towers_record = {**provenance(), "stage": "contrastive pre-training of the toy OWL-ViT towers",
                         "steps": pretrain_steps, "seconds": pretrain_seconds,
                         "text_tower": text_source or "trained here", "config": asdict(cfg)}
        save_clip_towers(clip, out_towers, towers_record)
    clip.train()

    # stage 2: detection
    t_det = time.time()
    opt = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.detect_lr, betas=(0.9, 0.98))
    sched = _Schedule(cfg.detect_lr, cfg.detect_steps, cfg.detect_minutes, cfg.warmup)
    batches, step = loader("detect"), 0
    while not sched.done(step) and (cfg.detect_minutes or step < cfg.detect_steps):
        batch = next(batches)
        for _ in range(max(1, cfg.reuse)):
            for g in opt.param_groups:
                g["lr"] = sched(step)
            turn, flip = dihedral(step) if cfg.reuse > 1 else (0, False)
            targets = [{**t, "boxes": turn_boxes(t["boxes"], turn, flip)} for t in batch["targets"]]
            with _autocast(cfg):
                logits, boxes = detect_forward(model, normalise_images(turn_images(batch["images"], turn, flip)),
                                               batch["input_ids"], batch["attention_mask"])
            k = cfg.per_object if sched.progress(step) < cfg.per_object_until else 1
            loss, parts = detection_loss(logits.float(), boxes.float(), targets, per_object=k)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            entry = {"stage": "detect", "step": step, "loss": round(float(loss.detach()), 4), **parts,
                     "elapsed_s": round(time.time() - t_start, 1)}
            if validate and step % cfg.eval_every == 0:
                model.eval()
                entry["val"] = validate(model)
                model.train()
            record(entry)
    detect_steps, detect_seconds = step, round(time.time() - t_det, 1)
    del batches
    model.eval()
    final_val = validate(model) if validate else None
    elapsed = round(time.time() - t_start, 1)
    summary = {**provenance(), "config": asdict(cfg), "seconds": elapsed,
               "pretrain": towers_from or {"steps": pretrain_steps, "seconds": pretrain_seconds},
               "text_tower": text_source or "trained here",
               "detect": {"steps": detect_steps, "seconds": detect_seconds}, "final_val": final_val,
               "out": {"detector": str(out_detector), "towers": str(out_towers)}}
    save_detector(model, out_detector, {"train": summary})
    if log_file:
        log_file.write(json.dumps({"summary": summary}) + "\n")
        log_file.close()
    return summary


class _ResNetTeacher:
    """The image tower of an open_clip ResNet local-dir model (the embedded toy CLIP), frozen: stage 1's
    distillation teacher. Returns the image embedding and the ``layer2`` / ``layer3`` feature maps
    resampled to the ViT's patch grid and layer-normed per position (dense targets: a convolutional
    tower's local shape features, which a ViT trained from scratch on two cores does not find alone)."""

    def __init__(self, folder: Path, grid: int = IMAGE_SIZE // PATCH) -> None:
        from open_clip.model import CLIP
        from safetensors.torch import load_file

        model = CLIP(**json.loads((folder / "open_clip_config.json").read_text())["model_cfg"])
        model.load_state_dict({k: v.float() for k, v in load_file(str(folder / "open_clip_model.safetensors")).items()})
        self.model = model.eval().requires_grad_(False)
        visual = self.model.visual
        self._maps: dict[str, torch.Tensor] = {}
        for stage in ("layer2", "layer3"):
            getattr(visual, stage).register_forward_hook(
                lambda module, inputs, out, stage=stage: self._maps.__setitem__(stage, out))
        self.channels = {s: int(getattr(visual, s)[-1].conv3.out_channels) for s in ("layer2", "layer3")}
        self.grid = grid

    def __call__(self, pixels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        grid = self.grid
        embedding = self.model.encode_image(pixels).float()
        stages = {}
        for stage, fmap in self._maps.items():
            fmap = F.interpolate(fmap.float(), size=(grid, grid), mode="bilinear", align_corners=False)
            tokens = fmap.flatten(2).transpose(1, 2)
            stages[stage] = F.layer_norm(tokens, tokens.shape[-1:])
        return embedding, stages


@torch.no_grad()
def raw_detections(model: Any, images: list[np.ndarray], queries: list[str], top_k: int = 100,
                   batch: int = 32) -> list[list[tuple[tuple[float, float, float, float], int, float]]]:
    """Per image, the ``top_k`` (patch, query) pairs by score as (box x0,y0,x1,y1 in the image's pixels,
    query index, score): OWL-ViT's raw output, no threshold and no NMS (the training-time check)."""
    from open_clip.tokenizer import SimpleTokenizer

    ids = SimpleTokenizer(context_length=MAX_TOKENS)(queries)
    out = []
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        logits, boxes = detect_forward(model, normalise_images(_pixels(chunk)), ids, (ids != 0).long())
        scores = logits.sigmoid()
        n_q = scores.shape[-1]
        for im, s, b in zip(chunk, scores, center_to_corners(boxes), strict=True):
            h, w = im.shape[:2]
            top = s.flatten().topk(min(top_k, s.numel()))
            scale = torch.tensor([w, h, w, h], dtype=torch.float32)
            out.append([(tuple((b[i // n_q].clamp(0, 1) * scale).tolist()), int(i % n_q), float(v))
                        for v, i in zip(top.values, top.indices, strict=True)])
    return out
