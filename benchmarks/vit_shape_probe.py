"""Why the toy OWL-ViT's towers learn shape late, and what moves it: a probe outside the detector recipe.

Plain supervised 6-way shape classification of single toy v2 objects (a linear head on the pooled
token), 4,096 training images, batch 64, AdamW 1e-3, bfloat16 autocast, 96 px inputs; top-1 on 500
other images every 200 steps. Variants (each from the same seed):

* ``vit``: the toy OWL-ViT's image tower as built (transformers' initialisation);
* ``vit_mimetic``: the same with mimetic attention initialisation (Trockman & Kolter 2023: W_q W_k^T ~
  I + noise, W_v W_o ~ -I + noise, 2-D sin-cos position embeddings);
* ``vit_dense``: plus dense distillation, as ``train-detector --dense-distil`` does: the middle and last
  blocks' patch tokens regress (linear adapters) onto the toy ResNet's layer2 / layer3 maps;
* ``vit_mimetic_dense``: both (mimetic initialisation, then dense distillation);
* ``resnet``: the toy ResNet's tower architecture from scratch, for reference.

``--easy`` draws the scenes the easy way (flat fills, nearly upright, plain backgrounds).

    cd benchmarks && ../.venv/bin/python vit_shape_probe.py --easy --variants vit,vit_mimetic,vit_dense
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _common import write_result
from PIL import Image

TOP = Path(__file__).resolve().parents[1]
SIDE = 96


def images(n: int, offset: int, easy: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from vlserve.toyworld.dataset import single_object
    from vlserve.toyworld.scene import SHAPES
    from vlserve.toyworld.scene_v2 import render_scene_v2
    from vlserve.toyworld.train import normalise_images

    out, ys = [], []
    for i in range(n):
        s = (render_scene_v2(np.random.default_rng(offset + i), n_objects=1, easy=1.0) if easy
             else single_object("train", offset + i))
        im = s.image if s.image.shape[0] == SIDE else np.asarray(
            Image.fromarray(s.image).resize((SIDE, SIDE), Image.Resampling.BICUBIC))
        out.append(im)
        ys.append(SHAPES.index(s.objects[0].shape))
    return normalise_images(np.stack(out)), torch.tensor(ys)


def mimetic(vision: Any, width: int, grid: int) -> None:
    with torch.no_grad():
        ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
        ys, xs = ys.flatten()[:, None].float(), xs.flatten()[:, None].float()
        omega = 1.0 / (100 ** (torch.arange(width // 4) / (width // 4)))
        pe = torch.cat([torch.sin(ys * omega), torch.cos(ys * omega), torch.sin(xs * omega), torch.cos(xs * omega)], 1)
        vision.embeddings.position_embedding.weight[1:] = pe
        vision.embeddings.position_embedding.weight[0] = 0
        for layer in vision.encoder.layers:
            a = layer.self_attn
            for first, second, alpha, beta, transpose in ((a.q_proj, a.k_proj, 0.7, 0.7, False),
                                                          (a.v_proj, a.out_proj, 0.4, -0.4, True)):
                m = alpha * torch.randn(width, width) / math.sqrt(width) + beta * torch.eye(width)
                u, s, vh = torch.linalg.svd(m)
                first.weight.copy_(s.sqrt()[:, None] * u.T)
                w = s.sqrt()[:, None] * vh
                second.weight.copy_(w.T if transpose else w)


def build(variant: str, patch: int | None = None) -> tuple[Any, list[torch.nn.Parameter]]:
    """A callable x -> (logits, auxiliary loss) and its parameters."""
    from open_clip.model import CLIP
    from transformers import OwlViTConfig, OwlViTForObjectDetection

    from vlserve.toyworld.detector_train import _ResNetTeacher
    from vlserve.toyworld.owl import OWL_CFG, PATCH

    torch.manual_seed(0)
    head = torch.nn.Linear(128, 6)
    if variant == "resnet":
        cfg = json.loads((TOP / "vlserve/assets/toy/open_clip_config.json").read_text())["model_cfg"]
        tower = CLIP(**cfg).visual
        return (lambda x: (head(tower(x)), torch.zeros(()))), [*tower.parameters(), *head.parameters()]
    patch = patch or PATCH
    cfg = {**OWL_CFG, "vision_config": {**OWL_CFG["vision_config"], "patch_size": patch}}
    vision = OwlViTForObjectDetection(OwlViTConfig(**cfg)).owlvit.vision_model
    if variant in ("vit_mimetic", "vit_mimetic_dense"):
        mimetic(vision, OWL_CFG["vision_config"]["hidden_size"], SIDE // patch)
    params = [*vision.parameters(), *head.parameters()]
    if variant not in ("vit_dense", "vit_mimetic_dense"):
        return (lambda x: (head(vision(pixel_values=x).pooler_output), torch.zeros(()))), params
    teacher = _ResNetTeacher(TOP / "vlserve/assets/toy", grid=SIDE // patch)
    adapters = torch.nn.ModuleDict({s: torch.nn.Linear(128, c) for s, c in teacher.channels.items()})
    params += list(adapters.parameters())

    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = vision(pixel_values=x, output_hidden_states=True)
        with torch.no_grad():
            _, stages = teacher(x)
        hidden = out.hidden_states
        aux = torch.stack([F.mse_loss(adapters[s](hidden[i][:, 1:]).float(), stages[s])
                           for s, i in (("layer2", len(hidden) // 2), ("layer3", len(hidden) - 1))]).sum()
        return head(out.pooler_output), aux
    return forward, params


def run(variant: str, data: tuple[torch.Tensor, ...], steps: int, patch: int | None = None
        ) -> list[dict[str, float]]:
    xtr, ytr, xva, yva = data
    forward, params = build(variant, patch)
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)
    gen = torch.Generator().manual_seed(0)
    curve, t0 = [], time.time()
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(xtr), (64,), generator=gen)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, aux = forward(xtr[idx])
            loss = F.cross_entropy(logits.float(), ytr[idx]) + aux
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 200 == 0:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                val = float((forward(xva)[0].argmax(1) == yva).float().mean())
                train = float((forward(xtr[:500])[0].argmax(1) == ytr[:500]).float().mean())
            curve.append({"step": step, "seconds": round(time.time() - t0, 1), "train_top1": round(train, 3),
                          "val_top1": round(val, 3)})
            print(variant, curve[-1], flush=True)
    return curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="vit,vit_mimetic,vit_dense,resnet")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--easy", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--patch", type=int, default=None, help="the ViT's patch size (default: the toy OWL-ViT's, 12)")
    ap.add_argument("--tag", default="", help="added to the results name")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    xtr, ytr = images(4096, 0, args.easy)
    xva, yva = images(500, 100_000, args.easy)
    curves = {v: run(v, (xtr, ytr, xva, yva), args.steps, args.patch) for v in args.variants.split(",")}
    write_result("vit_shape_probe" + ("_easy" if args.easy else "") + args.tag,
                 {"task": "supervised 6-way shape, single toy v2 objects", "easy": args.easy, "train_images": 4096,
                  "patch": args.patch or 12,
                  "val_images": 500, "batch": 64, "lr": 1e-3, "steps": args.steps, "curves": curves,
                  "final_val_top1": {v: c[-1]["val_top1"] for v, c in curves.items() if c}})


if __name__ == "__main__":
    main()
