"""Train the toy dual encoder: open_clip architecture, Matryoshka contrastive loss, soft targets.

Loss (per nested prefix ``d`` of the embedding, re-normalised, then averaged over prefixes, as in
Kusupati et al. 2022, "Matryoshka Representation Learning"): the CLIP InfoNCE loss in both
directions, except that the targets are *soft*: caption ``j`` is a positive for image ``i`` whenever
image ``i`` satisfies everything caption ``j`` says (many captions in a batch are identical, e.g.
"a star"; treating them as negatives would teach the model noise). With ``loss="siglip"`` the
pairwise sigmoid loss of Zhai et al. 2023 is used instead, with a learned ``logit_bias``.
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

from vlserve.toyworld.dataset import labelled_set, sample
from vlserve.toyworld.model import MATRYOSHKA_DIMS, MODEL_CFG, PREPROCESS_CFG, save_open_clip_dir, to_model_size


@dataclass
class TrainConfig:
    steps: int = 3000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 150
    seed: int = 0
    matryoshka: bool = True
    loss: str = "clip"  # or "siglip"
    threads: int = 0  # 0: leave torch's default
    eval_every: int = 250
    eval_n: int = 300
    world: str = "v2"
    workers: int = 1  # processes drawing batches while the model trains (0: draw in the training process)
    max_seconds: float = 0.0  # stop early (and say so in the summary) past this wall time; 0: no limit
    curriculum: float = 0.4  # v2: share of v1-like easy scenes falls from 1 to ``easy_floor`` over this fraction
    easy_floor: float = 0.1
    easy_hold: float = 0.0  # v2: fraction of steps trained on easy scenes only, before the curriculum starts
    reuse: int = 1  # v2: each drawn batch trains this many steps, each time under another flip/90° turn
    init: str | None = None  # warm start: an open_clip local-dir checkpoint of the same architecture
    autocast: str = "none"  # "bf16": forward passes under bf16 autocast (fp32 weights, optimiser and loss)
    schedule_by_time: bool = False  # with max_seconds: the cosine follows elapsed time too, so it ends on time


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def schedule_progress(cfg: TrainConfig, step: int, elapsed: float) -> float:
    """How far through the cosine decay training is: by step, or (``schedule_by_time`` with a time limit)
    by whichever of step and wall time is further along, so a run cut by its time limit still ends at
    a learning rate near zero instead of mid-schedule."""
    by_step = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    if cfg.schedule_by_time and cfg.max_seconds > 0:
        by_step = max(by_step, elapsed / cfg.max_seconds)
    return min(1.0, max(0.0, by_step))


def build_model(cfg: TrainConfig) -> tuple[Any, dict[str, Any]]:
    from open_clip.model import CLIP

    model_cfg = json.loads(json.dumps(MODEL_CFG))
    if cfg.loss == "siglip":
        model_cfg.update(init_logit_bias=-10.0, init_logit_scale=math.log(10))
    model = CLIP(**model_cfg)
    if cfg.init:
        from safetensors.torch import load_file

        init = Path(cfg.init)
        saved = json.loads((init / "open_clip_config.json").read_text())["model_cfg"]
        if saved != model_cfg:
            raise ValueError(f"{init}: architecture differs from the toy model's; cannot warm-start from it")
        model.load_state_dict({k: v.float() for k, v in load_file(str(init / "open_clip_model.safetensors")).items()})
    return model, model_cfg


REUSE_WINDOW = 8  # a reused batch comes back this many steps later, not at once


def drawn_batch(cfg: TrainConfig, step: int) -> tuple[int, int]:
    """(index of the drawn batch, pass over it) that training step ``step`` uses. With ``reuse`` R, the
    steps run in blocks of ``REUSE_WINDOW * R``: W fresh batches, then the same W again, R times."""
    if cfg.reuse <= 1:
        return step, 0
    block, pos = divmod(step, REUSE_WINDOW * cfg.reuse)
    return block * REUSE_WINDOW + pos % REUSE_WINDOW, pos // REUSE_WINDOW


class _Batches(torch.utils.data.Dataset):
    """Training batch ``step``: images at the model's input size, first captions, soft-target matrix.

    A batch is a pure function of (seed, step), so drawing it in a worker process changes nothing.
    Reused batches (``reuse`` > 1) are kept in the drawing process for the window in which they return;
    a reuse pass turns/flips every image (a dihedral transform of the whole image: v2 captions say
    nothing about position, so every caption stays true and the soft targets are unchanged).
    """

    def __init__(self, cfg: TrainConfig, tokenizer: Callable[..., torch.Tensor]) -> None:
        self.cfg, self.tokenizer = cfg, tokenizer
        self._cache: dict[int, tuple[np.ndarray, torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return self.cfg.steps

    def _draw(self, index: int) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        offset = cfg.seed * 10_000_000  # the seed offsets the stream of scenes: two seeds see different data
        easy = easy_share(cfg, index * max(1, cfg.reuse))
        batch = [sample("train", offset + index * cfg.batch_size + b, world=cfg.world, easy=easy)
                 for b in range(cfg.batch_size)]
        images = np.stack([to_model_size(s.scene.image) for s in batch])
        positives = torch.tensor([[s_j.captions[0][1].satisfied_by(s_i.scene.objects) for s_j in batch]
                                  for s_i in batch], dtype=torch.float32)
        return images, self.tokenizer([s.captions[0][0] for s in batch]), positives

    def __getitem__(self, step: int) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        index, rep = drawn_batch(self.cfg, step)
        if rep == 0 or index not in self._cache:
            self._cache = {k: v for k, v in self._cache.items() if k > index - REUSE_WINDOW}
            self._cache[index] = self._draw(index)
        images, tokens, positives = self._cache[index]
        if rep:
            if self.cfg.world != "v2":
                raise ValueError("batch reuse turns images, which v1 captions (positions) forbid; use v2")
            rng = np.random.default_rng([self.cfg.seed, step])
            images = np.ascontiguousarray(np.stack([
                np.rot90(im[:, ::-1] if rng.random() < 0.5 else im, k=int(rng.integers(1, 4)))
                for im in images]))
        return images, tokens, positives


def easy_share(cfg: TrainConfig, step: int) -> float:
    """Curriculum: the probability that a training scene is drawn the easy (v1-like) way at ``step``.
    Shapes are first learned as flat-filled, upright blobs; rotations and drawing styles then take
    over, down to a floor of easy scenes."""
    if cfg.world != "v2" or cfg.curriculum <= 0:
        return 0.0
    hold = cfg.easy_hold * cfg.steps
    if step < hold:
        return 1.0
    return max(cfg.easy_floor, 1.0 - (step - hold) / (cfg.curriculum * cfg.steps))


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def normalise_images(images: np.ndarray | torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W] with the toy models' mean and std (CLIP's)."""
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(images)
    x = x.to(device).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(PREPROCESS_CFG["mean"], device=device).view(1, 3, 1, 1)
    std = torch.tensor(PREPROCESS_CFG["std"], device=device).view(1, 3, 1, 1)
    return (x - mean) / std


def contrastive_loss(img: torch.Tensor, txt: torch.Tensor, positives: torch.Tensor, model: Any,
                     dims: tuple[int, ...], kind: str) -> torch.Tensor:
    """Mean over nested prefixes of the soft-target CLIP loss (or the sigmoid loss)."""
    scale = model.logit_scale.exp().clamp(max=100)
    losses = []
    for d in dims:
        i = F.normalize(img[:, :d], dim=-1)
        t = F.normalize(txt[:, :d], dim=-1)
        logits = scale * i @ t.T
        if kind == "siglip":
            labels = positives * 2 - 1
            losses.append(-F.logsigmoid(labels * (logits + model.logit_bias)).sum() / len(img))
        else:
            i2t = positives / positives.sum(1, keepdim=True)
            t2i = positives.T / positives.T.sum(1, keepdim=True)
            losses.append((F.cross_entropy(logits, i2t) + F.cross_entropy(logits.T, t2i)) / 2)
    return torch.stack(losses).mean()


@torch.no_grad()
def zero_shot_accuracy(model: Any, tokenizer: Callable[..., torch.Tensor], task: str, n: int,
                       dims: tuple[int, ...], split: str = "val") -> dict[int, float]:
    """Quick in-training check: top-1 on single-object images with the task's default prompts."""
    images, labels, classes = labelled_set(split, task, n)
    device = next(model.parameters()).device
    model.eval()
    img = model.encode_image(normalise_images(np.stack([to_model_size(im) for im in images]), device))
    prompts = [TASK_PROMPTS[task].format(c) for c in classes]
    txt = model.encode_text(tokenizer(prompts).to(device))
    model.train()
    truth = torch.tensor([classes.index(y) for y in labels], device=device)
    out = {}
    for d in dims:
        pred = (F.normalize(img[:, :d], dim=-1) @ F.normalize(txt[:, :d], dim=-1).T).argmax(1)
        out[d] = float((pred == truth).float().mean())
    return out


TASK_PROMPTS = {"shape": "a photo of a {}.", "colour": "a photo of a {} object."}


def train(out: Path, cfg: TrainConfig, log_path: Path | None = None,
          progress: Callable[[int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train from scratch and write the open_clip local-dir checkpoint to ``out``."""
    from open_clip.tokenizer import SimpleTokenizer

    from vlserve.provenance import open_run_log

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = _device()
    model, model_cfg = build_model(cfg)
    model.to(device).train()
    tokenizer = SimpleTokenizer(context_length=model_cfg["text_cfg"]["context_length"])
    dims = MATRYOSHKA_DIMS if cfg.matryoshka else (model_cfg["embed_dim"],)

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * schedule_progress(cfg, step, time.time() - t0)))

    if cfg.autocast not in ("none", "bf16"):
        raise ValueError(f"autocast must be none or bf16, got {cfg.autocast!r}")
    if cfg.autocast == "bf16":  # convolutions in bf16 run fastest channels-last (oneDNN on CPU, cuDNN on GPU)
        model.visual.to(memory_format=torch.channels_last)

    log: list[dict[str, Any]] = []
    log_file = open_run_log(log_path) if log_path else None
    t0, cpu0 = time.time(), time.process_time()
    gen_time = 0.0  # time the training loop waited for data
    loader = torch.utils.data.DataLoader(_Batches(cfg, tokenizer), batch_size=None, shuffle=False,
                                         num_workers=cfg.workers, worker_init_fn=_worker_init,
                                         prefetch_factor=4 if cfg.workers else None,
                                         persistent_workers=False)
    batches = iter(loader)
    for step in range(cfg.steps):
        tg = time.time()
        images, tokens, positives = next(batches)
        tokens, positives = tokens.to(device), positives.to(device)
        images = images.numpy() if isinstance(images, torch.Tensor) else images
        gen_time += time.time() - tg
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        pixels = normalise_images(images, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.autocast == "bf16"):
            img = model.encode_image(pixels.contiguous(memory_format=torch.channels_last)
                                     if cfg.autocast == "bf16" else pixels)
            txt = model.encode_text(tokens)
        loss = contrastive_loss(img.float(), txt.float(), positives, model, dims, cfg.loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        entry: dict[str, Any] = {"step": step + 1, "loss": round(float(loss.detach()), 4),
                                 "elapsed_s": round(time.time() - t0, 1)}
        stop = bool(cfg.max_seconds) and time.time() - t0 > cfg.max_seconds and step + 1 < cfg.steps
        if stop:
            entry["stopped_early"] = f"time limit {cfg.max_seconds:.0f} s reached at step {step + 1}"
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps or stop:
            for task in ("shape", "colour"):
                acc = zero_shot_accuracy(model, tokenizer, task, cfg.eval_n, dims)
                entry[f"val_{task}_top1"] = {str(d): round(a, 4) for d, a in acc.items()}
        log.append(entry)
        if log_file and (len(entry) > 3 or (step + 1) % 25 == 0):
            log_file.write(json.dumps(entry) + "\n")
            log_file.flush()
        if progress:
            progress(step + 1, entry)
        if stop:
            break
    elapsed = time.time() - t0
    model.eval()
    model.visual.to(memory_format=torch.contiguous_format)
    extra = {"vlserve": {"kind": "toy", "matryoshka_dims": list(dims), "train": asdict(cfg),
                         "train_seconds": round(elapsed, 1), "device": str(device)}}
    save_open_clip_dir(model.cpu(), out, model_cfg, extra)
    from vlserve.provenance import provenance

    summary = {"config": asdict(cfg), "device": str(device), "seconds": round(elapsed, 1),
               "main_process_cpu_seconds": round(time.process_time() - cpu0, 1), "provenance": provenance(),
               "data_wait_seconds": round(gen_time, 1),
               "steps_done": len(log), "images_per_second": round(len(log) * cfg.batch_size / elapsed, 1),
               "final": log[-1], "out": str(out)}
    if log_file:
        log_file.write(json.dumps({"summary": summary}) + "\n")
        log_file.close()
    return summary
