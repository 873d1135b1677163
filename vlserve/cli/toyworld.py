"""``vlserve toyworld``: export the procedural gallery, train the toy model."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from tqdm import tqdm

from vlserve.errors import InvalidInput

toyworld_app = typer.Typer(no_args_is_help=True, help="The procedural toy world and its tiny model.")


@toyworld_app.command("export")
def export(
    out: Annotated[Path, typer.Option(help="output folder")],
    split: Annotated[str, typer.Option(help="train | val | test | heldout | heldout-dashed (v2 only)")] = "test",
    n: Annotated[int, typer.Option(help="number of scenes")] = 2000,
    n_novel: Annotated[int, typer.Option(help="novel-class images (class-balanced)")] = 240,
    seed: Annotated[int | None, typer.Option(help="world seed (default: the built-in one)")] = None,
    world: Annotated[str, typer.Option(help="v2 (current: any rotation, many drawing styles) | v1")] = "v2",
) -> None:
    """Write JPEG scenes with captions.csv, labels.json and masks, plus the novel classes and their
    descriptor file (Menon & Vondrick format)."""
    from PIL import Image

    from vlserve.toyworld.dataset import DEFAULT_SEED, WORLD_SPLITS, novel_object, sample
    from vlserve.toyworld.novel import NOVEL_CLASSES, novel_descriptors
    from vlserve.toyworld.scene import SHAPES

    if world not in WORLD_SPLITS:
        raise InvalidInput(f"unknown world {world!r}; known: {', '.join(WORLD_SPLITS)}")
    if split not in WORLD_SPLITS[world]:
        raise InvalidInput(f"unknown split {split!r} in world {world}; known: {', '.join(WORLD_SPLITS[world])}")
    if n < 1:
        raise InvalidInput(f"--n must be >= 1, got {n}")
    seed = DEFAULT_SEED if seed is None else seed
    for sub in ("images", "masks", "novel"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    labels: dict[str, dict[str, object]] = {}
    with (out / "captions.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption"])
        for i in tqdm(range(n), desc=f"export {split}", unit="img"):
            s = sample(split, i, n_captions=3, seed=seed, world=world)
            name = f"images/{split}_{i:06d}.jpg"
            Image.fromarray(s.scene.image).save(out / name, quality=95)
            Image.fromarray(s.scene.semantic_mask()).save(out / f"masks/{split}_{i:06d}_semantic.png")
            Image.fromarray(s.scene.instance_mask()).save(out / f"masks/{split}_{i:06d}_instances.png")
            for text, _ in s.captions:
                w.writerow([name, text])
            labels[name] = {"size_px": s.scene.image.shape[0],
                            "objects": [{"shape": o.shape, "colour": o.colour, "size": o.size, "style": list(o.style),
                                         "angle_deg": round(o.angle * 180 / 3.141592653589793, 1),
                                         "box_xyxy": list(o.box), "instance_id": k + 1}
                                        for k, o in enumerate(s.scene.objects)]}
    meta = {"world": world, "split": split, "seed": seed, "n": n, "semantic_classes": ["background", *SHAPES],
            "images": labels}
    (out / "labels.json").write_text(json.dumps(meta, indent=1) + "\n")
    with (out / "novel" / "labels.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "label"])
        for i in range(n_novel):
            scene, cls = novel_object(split, i, seed, world)
            Image.fromarray(scene.image).save(out / "novel" / f"{i:05d}.jpg", quality=95)
            w.writerow([f"{i:05d}.jpg", cls])
    (out / "novel" / "descriptors.json").write_text(json.dumps(novel_descriptors(), indent=1) + "\n")
    (out / "novel" / "classes.json").write_text(json.dumps(NOVEL_CLASSES, indent=1) + "\n")
    typer.echo(json.dumps({"out": str(out), "scenes": n, "novel_images": n_novel, "split": split, "world": world}))


@toyworld_app.command("sheets")
def sheets(
    out: Annotated[Path, typer.Option(help="output folder for the contact sheets (JPEG)")],
    per_style: Annotated[int, typer.Option(help="examples per style")] = 16,
) -> None:
    """Write a contact sheet (JPEG grid) of each drawing style, held-out styles included."""
    from vlserve.toyworld.sheets import write_sheets

    typer.echo(json.dumps(write_sheets(out, per_style), indent=1))


@toyworld_app.command("train")
def train(
    out: Annotated[Path, typer.Option(help="output folder (open_clip local-dir layout)")],
    steps: Annotated[int, typer.Option()] = 3200,
    batch_size: Annotated[int, typer.Option()] = 128,
    lr: Annotated[float, typer.Option()] = 1e-3,
    seed: Annotated[int, typer.Option()] = 0,
    matryoshka: Annotated[bool, typer.Option(help="Matryoshka loss over nested prefixes")] = True,
    loss: Annotated[str, typer.Option(help="clip | siglip")] = "clip",
    threads: Annotated[int, typer.Option(help="torch CPU threads (0: default)")] = 0,
    log: Annotated[Path | None, typer.Option(help="JSON-lines training log")] = None,
    workers: Annotated[int, typer.Option(help="processes drawing batches alongside training (0: none)")] = 1,
    max_minutes: Annotated[float, typer.Option(help="stop early past this wall time (0: no limit)")] = 0.0,
    eval_every: Annotated[int, typer.Option(help="validation accuracy every N steps")] = 250,
    curriculum: Annotated[float, typer.Option(help="fraction of steps over which easy v1-like scenes give way "
                                                   "to the full v2 mix (0: none)")] = 0.4,
    init: Annotated[Path | None, typer.Option(help="warm start from an open_clip local-dir of the same "
                                                   "architecture")] = None,
    world: Annotated[str, typer.Option(help="v2 (current) | v1")] = "v2",
    easy_hold: Annotated[float, typer.Option(help="fraction of steps on easy scenes only, before the "
                                                  "curriculum starts (v2)")] = 0.0,
    reuse: Annotated[int, typer.Option(help="steps per drawn batch, each under another flip/90° turn (v2)")] = 1,
    autocast: Annotated[str, typer.Option(help="none | bf16: forward passes under bf16 autocast (weights, "
                                               "optimiser and loss stay fp32)")] = "none",
    schedule_by_time: Annotated[bool, typer.Option(help="with --max-minutes: the learning-rate cosine also "
                                                        "follows wall time, so it ends on time")] = False,
) -> None:
    """Train the toy dual encoder from scratch (seeded; uses a GPU when present)."""
    from vlserve.toyworld.train import TrainConfig
    from vlserve.toyworld.train import train as run

    if world not in ("v1", "v2"):
        raise InvalidInput(f"--world must be v1 or v2, got {world!r}")
    if reuse < 1 or (reuse > 1 and world != "v2"):
        raise InvalidInput(f"--reuse must be ≥ 1, and 1 for the v1 world (its captions name positions), got {reuse}")
    if loss not in ("clip", "siglip"):
        raise InvalidInput(f"--loss must be clip or siglip, got {loss!r}")
    if autocast not in ("none", "bf16"):
        raise InvalidInput(f"--autocast must be none or bf16, got {autocast!r}")
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed, matryoshka=matryoshka, loss=loss,
                      threads=threads, workers=workers, max_seconds=max_minutes * 60, eval_every=eval_every,
                      curriculum=curriculum, init=str(init) if init else None, world=world,
                      easy_hold=easy_hold, reuse=reuse, autocast=autocast, schedule_by_time=schedule_by_time)
    with tqdm(total=steps, desc="train", unit="step") as bar:
        def progress(step: int, entry: dict[str, Any]) -> None:
            bar.update(1)
            bar.set_postfix(loss=entry["loss"])

        summary = run(out, cfg, log_path=log, progress=progress)
    typer.echo(json.dumps(summary))


@toyworld_app.command("train-detector")
def train_detector(
    out: Annotated[Path, typer.Option(help="detector folder (transformers OWL-ViT save_pretrained layout)")],
    towers_out: Annotated[Path, typer.Option(help="folder for the contrastive towers as a transformers CLIPModel")],
    pretrain_minutes: Annotated[float, typer.Option(help="wall-time budget of stage 1, contrastive towers "
                                                         "(0: run --pretrain-steps)")] = 0.0,
    pretrain_steps: Annotated[int, typer.Option(help="stage 1 steps (also sets the easy-scene schedule)")] = 1000,
    detect_minutes: Annotated[float, typer.Option(help="wall-time budget of stage 2, detection "
                                                       "(0: run --detect-steps)")] = 0.0,
    detect_steps: Annotated[int, typer.Option()] = 2000,
    pretrain_lr: Annotated[float, typer.Option()] = 1e-3,
    detect_lr: Annotated[float, typer.Option()] = 5e-4,
    seed: Annotated[int, typer.Option()] = 0,
    threads: Annotated[int, typer.Option(help="torch CPU threads (0: default)")] = 0,
    workers: Annotated[int, typer.Option(help="processes drawing batches alongside training (0: none)")] = 1,
    eval_every: Annotated[int, typer.Option(help="validation AP50 every N detection steps")] = 200,
    eval_n: Annotated[int, typer.Option(help="validation scenes per check")] = 150,
    log: Annotated[Path | None, typer.Option(help="JSON-lines training log")] = None,
    init_towers: Annotated[Path | None, typer.Option(help="skip stage 1: the --towers-out folder of an earlier "
                                                          "run")] = None,
    text_from: Annotated[Path | None, typer.Option(help="an open_clip toy CLIP folder (e.g. vlserve/assets/toy) whose "
                                                        "text tower is copied in and locked (LiT)")] = None,
    distil: Annotated[float, typer.Option(help="stage 1: weight of the cosine distillation to the --text-from "
                                               "model's image embedding (0: none)")] = 0.0,
    batch_size: Annotated[int, typer.Option(help="stage 1 batch")] = 128,
    per_object: Annotated[int, typer.Option(help="stage 2: patches matched to each object for the first half "
                                                 "(1: one-to-one, OWL-ViT's)")] = 1,
    easy_share: Annotated[float, typer.Option(help="stage 1: share of --pretrain-steps drawn the easy way, then "
                                                   "faded out over as many steps")] = 0.3,
    token_labels: Annotated[float, typer.Option(help="stage 1: weight of the per-patch shape and colour "
                                                     "classification from the exact masks (0: none)")] = 0.0,
    dense_distil: Annotated[float, typer.Option(help="stage 1: weight of the per-patch distillation of the "
                                                     "--text-from ResNet's layer2/layer3 features (0: none)")] = 0.0,
    reuse: Annotated[int, typer.Option(help="steps per drawn batch, each under another rotation/flip")] = 1,
    bf16: Annotated[bool, typer.Option(help="bfloat16 autocast for the forward passes")] = True,
) -> None:
    """Train the toy OWL-ViT from random weights: contrastive towers, then detection (see
    ``vlserve.toyworld.detector_train``). Validation is COCO AP50 (pycocotools) on val scenes."""
    from vlserve.evaluation.toy_detection import raw_ap50
    from vlserve.toyworld.detector_train import DetectorTrainConfig
    from vlserve.toyworld.detector_train import train_detector as run

    for name, value in (("--pretrain-minutes", pretrain_minutes), ("--detect-minutes", detect_minutes),
                        ("--token-labels", token_labels), ("--dense-distil", dense_distil)):
        if value < 0:
            raise InvalidInput(f"{name} must be ≥ 0, got {value}")
    if not 0 <= easy_share <= 1:
        raise InvalidInput(f"--easy-share must be in [0, 1], got {easy_share}")
    if reuse < 1:
        raise InvalidInput(f"--reuse must be ≥ 1, got {reuse}")
    cfg = DetectorTrainConfig(pretrain_steps=pretrain_steps, pretrain_minutes=pretrain_minutes,
                              detect_steps=detect_steps, detect_minutes=detect_minutes, seed=seed, threads=threads,
                              pretrain_lr=pretrain_lr, detect_lr=detect_lr,
                              init_towers=str(init_towers) if init_towers else None, pretrain_batch=batch_size,
                              text_from=str(text_from) if text_from else None, distil=distil,
                              per_object=per_object, easy_share=easy_share, token_labels=token_labels,
                              reuse=reuse, bf16=bf16, dense_distil=dense_distil, workers=workers,
                              eval_every=eval_every)
    bars = {"pretrain": tqdm(desc="towers", unit="step"), "detect": tqdm(desc="detection", unit="step")}

    def progress(stage: str, step: int, entry: dict[str, Any]) -> None:
        bars[stage].update(1)
        bars[stage].set_postfix(loss=entry["loss"], **entry.get("val", {}))

    summary = run(out, towers_out, cfg, log_path=log, validate=lambda m: raw_ap50(m, "val", eval_n), progress=progress)
    for bar in bars.values():
        bar.close()
    typer.echo(json.dumps(summary))
