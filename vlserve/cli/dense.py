"""``vlserve dense``: train a DenseCLIP pixel-text head on masks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from tqdm import tqdm

from vlserve.cli.common import load_model, print_json

dense_app = typer.Typer(no_args_is_help=True, help="Pixel-text maps: train a DenseCLIP head.")


@dense_app.command("train")
def train(
    out: Annotated[Path, typer.Option(help="folder for head.safetensors + head.json")],
    model: Annotated[str, typer.Option(help="encoder spec (an open_clip ResNet tower, e.g. toy)")] = "toy",
    data: Annotated[str, typer.Option(help="toy (toy world v2 scenes) or a folder: images/, masks/, labels.txt")]
    = "toy",
    steps: Annotated[int, typer.Option(help="steps (the learning rate follows steps or the time limit)")] = 6000,
    batch_size: Annotated[int, typer.Option(help="images per step")] = 32,
    lr: Annotated[float, typer.Option(help="peak learning rate (AdamW, cosine)")] = 1e-3,
    input_size: Annotated[int, typer.Option(help="images are resized to this square size")] = 128,
    fpn_channels: Annotated[int, typer.Option(help="width of the semantic FPN decoder")] = 64,
    label_channels: Annotated[int, typer.Option(help="width of the per-label decoder channels")] = 32,
    pool: Annotated[int, typer.Option(help="training images drawn (toy) or read (folder)")] = 16000,
    max_seconds: Annotated[float, typer.Option(help="stop after this wall time (0: no limit)")] = 0.0,
    eval_every: Annotated[int, typer.Option(help="validation mIoU every N steps (toy)")] = 500,
    threads: Annotated[int, typer.Option(help="torch threads")] = 2,
    log: Annotated[Path | None, typer.Option(help="JSON-lines training log")] = None,
) -> None:
    """Train a DenseCLIP head for MODEL's frozen encoder; the head is bound to the encoder's fingerprint."""
    from vlserve.dense.train import DenseTrainConfig, train_head

    enc = load_model(model)
    cfg = DenseTrainConfig(data=data, steps=steps, batch_size=batch_size, lr=lr, input_size=input_size, pool=pool,
                           fpn_channels=fpn_channels, label_channels=label_channels,
                           max_seconds=max_seconds, eval_every=eval_every, threads=threads)
    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="img" if stage == "pool" else "step")
        bar.update(done - bar.n if stage == "train" else done)

    summary = train_head(enc, out, cfg, log, progress)
    for bar in bars.values():
        bar.close()
    print_json({"out": str(out), "steps_done": summary["steps_done"], "seconds": summary["seconds"],
                "final": summary["final"]})
