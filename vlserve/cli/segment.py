"""``vlserve segment``: pixel-text score maps and a segmentation of one image, in-process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from vlserve.cli.common import DeviceOpt, PrecisionOpt, check_files, load_model, naming_files, print_json, settings
from vlserve.errors import InvalidInput


def segment(
    image: Annotated[Path, typer.Argument(help="image file")],
    labels: Annotated[str, typer.Option("--labels", "-l", help="comma-separated labels, e.g. 'star,circle'")],
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for mask.png, overlay.png, heatmap_<i>.png, "
                                                         "result.json")],
    method: Annotated[str | None, typer.Option(help="vanilla | maskclip | sclip | clearclip | denseclip "
                                                    "(default: denseclip where a head is deployed, else maskclip)")]
    = None,
    head: Annotated[str | None, typer.Option(help="DenseCLIP head folder; 'none' for none (default: the model's "
                                                  "embedded head, if any)")] = None,
    background_threshold: Annotated[float | None, typer.Option(help="best score under this: background")] = None,
    output_side: Annotated[int | None, typer.Option(help="longer side of the maps (at most 512)")] = None,
    stride: Annotated[int | None, typer.Option(help="sliding windows every STRIDE pixels (training-free methods)")]
    = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="model spec (default: $VLSERVE_MODEL)")] = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
) -> None:
    """Segment IMAGE into LABELS: writes the mask PNG (0 background, i + 1 for label i), a colour overlay
    with a legend, one heatmap per label, and prints per-label pixel shares as JSON."""
    from PIL import Image, ImageOps

    from vlserve.dense.render import write_outputs
    from vlserve.dense.service import PixelTextService

    names = [label.strip() for label in labels.split(",")]
    if not any(names):
        raise InvalidInput("no labels given: --labels 'star,circle'", field="labels")
    check_files([image])
    params = {"DENSE_HEAD": head or "", "TEXT_CACHE": str(settings().cache_dir / "text_embeddings.sqlite")}
    service = PixelTextService(load_model(model, device, precision), params)
    data = image.read_bytes()
    with naming_files([image], ("image",)):
        job = service.parse([data], names, method, [], background_threshold, output_side, stride)
        result = service.run(job)[0]
    with Image.open(image) as pil:  # upright, as the model saw it
        written = write_outputs(out, ImageOps.exif_transpose(pil), result.scores, result.segmentation, names)
    total = result.segmentation.size
    report = {"image": str(image), "model": service.engine.encoder.spec.raw, "method": result.method,
              "labels": names, "map_size": list(result.segmentation.shape), "image_size": list(result.image_size),
              "pixel_share": {label: round(float(np.mean(result.segmentation == i)), 4)
                              for i, label in enumerate(names)},
              "background_share": round(float(np.sum(result.segmentation < 0)) / total, 4), "files": written}
    (out / "result.json").write_text(json.dumps(report, indent=1) + "\n")
    print_json(report)
