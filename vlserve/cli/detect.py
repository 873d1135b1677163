"""``vlserve detect``: open-vocabulary detection (OWL-ViT / OWLv2) in-process, printed as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from vlserve.cli.common import DeviceOpt, PrecisionOpt, check_files, load_detector, naming_files, print_json, settings
from vlserve.errors import InvalidInput


def _parse_box(text: str, item: int) -> tuple[float, float, float, float]:
    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError:
        raise InvalidInput(f"--query-box expects x0,y0,x1,y1 (four numbers), got {text!r}", item=item,
                           field="query_boxes") from None
    return x0, y0, x1, y1


def detect(
    images: Annotated[list[Path], typer.Argument(help="image files to search")],
    query: Annotated[list[str] | None, typer.Option("--query", "-q", help="text query (repeatable)")] = None,
    query_image: Annotated[list[Path] | None, typer.Option("--query-image",
                                                           help="example image to find (repeatable)")] = None,
    query_box: Annotated[list[str] | None, typer.Option(
        "--query-box", help="x0,y0,x1,y1: the object inside its --query-image (pixels); one per --query-image, "
                            "in order; default: the whole image")] = None,
    threshold: Annotated[float, typer.Option(help="keep boxes scoring above this, in [0, 1]")] = 0.1,
    nms: Annotated[float, typer.Option(help="per-query NMS IoU in [0, 1]; 1 turns NMS off")] = 0.3,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="boxes per image")] = 100,
    model: Annotated[str | None, typer.Option("--model", "-m", help="detector spec (default: "
                                                                      "$VLSERVE_DETECTOR_MODEL)")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="also write the JSON here")] = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
) -> None:
    """Find objects described by --query texts, or like a --query-image, in IMAGES; prints JSON with
    boxes (x0, y0, x1, y1 in each image's pixels), scores and the matching query."""
    from vlserve.detection import DetectOptions, ObjectDetector
    from vlserve.models.text_cache import TextEmbeddingCache

    # what can be refused without the model is refused before loading it
    if query and query_image:
        raise InvalidInput("give --query texts or --query-image examples, not both", field="queries")
    if query is None and not query_image:
        raise InvalidInput("no queries: give --query TEXT or --query-image PATH", field="queries")
    if query_box and not query_image:
        raise InvalidInput("--query-box applies to a --query-image", field="query_boxes")
    boxes = [_parse_box(b, i) for i, b in enumerate(query_box or [])] or None
    DetectOptions(threshold, nms, top_k)
    check_files([*images, *(query_image or [])])
    detector = ObjectDetector(load_detector(model, device, precision),
                              TextEmbeddingCache(settings().cache_dir / "text_embeddings.sqlite"))
    with naming_files(images, ("image",)), naming_files(query_image or [], ("query_images", "query_boxes")):
        results = detector.detect([p.read_bytes() for p in images], query or None,
                                  query_images=[p.read_bytes() for p in query_image] if query_image else None,
                                  query_boxes=boxes, threshold=threshold, nms_iou=nms, top_k=top_k)
    m = detector.model
    report = {"model": m.spec.raw, "fingerprint": m.fingerprint, "family": m.family,
              "query_kind": "image" if query_image else "text",
              "queries": list(query or [str(p) for p in query_image or []]),
              "threshold": threshold, "nms_iou": nms, "top_k": top_k,
              "results": [{"image": str(p), **r.to_dict(digits=6)} for p, r in zip(images, results, strict=True)]}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
    print_json(report)
