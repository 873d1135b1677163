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
    split: Annotated[str, typer.Option(help="train | val | test")] = "test",
    n: Annotated[int, typer.Option(help="number of scenes")] = 2000,
    n_novel: Annotated[int, typer.Option(help="novel-class images (class-balanced)")] = 240,
    seed: Annotated[int | None, typer.Option(help="world seed (default: the built-in one)")] = None,
) -> None:
    """Write JPEG scenes with captions.csv, labels.json and masks, plus the novel classes and their
    descriptor file (Menon & Vondrick format)."""
    from PIL import Image

    from vlserve.toyworld.dataset import DEFAULT_SEED, SPLIT_IDS, novel_object, sample
    from vlserve.toyworld.novel import NOVEL_CLASSES, novel_descriptors
    from vlserve.toyworld.scene import SHAPES

    if split not in SPLIT_IDS:
        raise InvalidInput(f"unknown split {split!r}; known: {', '.join(SPLIT_IDS)}")
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
            s = sample(split, i, n_captions=3, seed=seed)
            name = f"images/{split}_{i:06d}.jpg"
            Image.fromarray(s.scene.image).save(out / name, quality=95)
            Image.fromarray(s.scene.semantic_mask()).save(out / f"masks/{split}_{i:06d}_semantic.png")
            Image.fromarray(s.scene.instance_mask()).save(out / f"masks/{split}_{i:06d}_instances.png")
            for text, _ in s.captions:
                w.writerow([name, text])
            labels[name] = {"objects": [{"shape": o.shape, "colour": o.colour, "size": o.size,
                                         "box_xyxy": list(o.box), "instance_id": k + 1}
                                        for k, o in enumerate(s.scene.objects)]}
    meta = {"split": split, "seed": seed, "n": n, "semantic_classes": ["background", *SHAPES], "images": labels}
    (out / "labels.json").write_text(json.dumps(meta, indent=1) + "\n")
    with (out / "novel" / "labels.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "label"])
        for i in range(n_novel):
            scene, cls = novel_object(split, i, seed)
            Image.fromarray(scene.image).save(out / "novel" / f"{i:05d}.jpg", quality=95)
            w.writerow([f"{i:05d}.jpg", cls])
    (out / "novel" / "descriptors.json").write_text(json.dumps(novel_descriptors(), indent=1) + "\n")
    (out / "novel" / "classes.json").write_text(json.dumps(NOVEL_CLASSES, indent=1) + "\n")
    typer.echo(json.dumps({"out": str(out), "scenes": n, "novel_images": n_novel, "split": split}))


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
) -> None:
    """Train the toy dual encoder from scratch (seeded; uses a GPU when present)."""
    from vlserve.toyworld.train import TrainConfig
    from vlserve.toyworld.train import train as run

    if loss not in ("clip", "siglip"):
        raise InvalidInput(f"--loss must be clip or siglip, got {loss!r}")
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed, matryoshka=matryoshka, loss=loss,
                      threads=threads)
    with tqdm(total=steps, desc="train", unit="step") as bar:
        def progress(step: int, entry: dict[str, Any]) -> None:
            bar.update(1)
            bar.set_postfix(loss=entry["loss"])

        summary = run(out, cfg, log_path=log, progress=progress)
    typer.echo(json.dumps(summary))
