"""``vlserve eval``: zero-shot accuracy and retrieval recall, with Matryoshka truncation curves."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from tqdm import tqdm

from vlserve.cli.common import load_model
from vlserve.errors import InvalidInput

eval_app = typer.Typer(no_args_is_help=True, help="Evaluate a model: zero-shot accuracy, retrieval recall.")

ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="model spec (default: toy)")]
DimsOpt = Annotated[str | None, typer.Option("--dimensions", "-d",
                                             help="comma list of Matryoshka dims, or 'all' (default: full)")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="also write the JSON report here")]
NOpt = Annotated[int, typer.Option("--n", help="items drawn from toyworld sources")]


def parse_dims(value: str | None, full: int) -> list[int]:
    if not value:
        return [full]
    if value == "all":
        dims, d = [], 8
        while d < full:
            dims.append(d)
            d *= 2
        return [*dims, full]
    try:
        dims = [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise InvalidInput(f"--dimensions: expected a comma list of integers or 'all', got {value!r}",
                           field="dimensions") from None
    bad = [d for d in dims if not 1 <= d <= full]
    if bad or not dims:
        raise InvalidInput(f"--dimensions: each value must be in 1..{full}, got {value!r}", field="dimensions")
    return dims


def _emit(report: dict[str, Any], out: Path | None) -> None:
    """Print the report; with ``--out`` also write it, with its provenance (command, date, machine,
    versions, git commit), so a figure in the docs can be traced to its run."""
    text = json.dumps(report, indent=2)
    if out:
        from vlserve.provenance import provenance

        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({**provenance(), **report}, indent=2) + "\n")
    typer.echo(text)


def _embedded(kind: str, data: str, n: int, model: str | None, dimensions: str | None) -> tuple[Any, ...]:
    """Load the data source (``labelled`` or ``captioned``) and the model, parse --dimensions and
    embed the images with a progress bar: (data set, model, dims, start time, image embeddings)."""
    from vlserve.evaluation.data import load_captioned, load_labelled
    from vlserve.evaluation.metrics import embed_images

    ds = (load_labelled if kind == "labelled" else load_captioned)(data, n)
    enc = load_model(model)
    dims = parse_dims(dimensions, enc.embed_dim)
    t0 = time.time()
    with tqdm(total=len(ds.images), desc="images", unit="img", file=None) as bar:
        return ds, enc, dims, t0, embed_images(enc, ds.images, progress=bar.update)


def _about(enc: Any, data: str) -> dict[str, str]:
    return {"model": enc.spec.raw, "fingerprint": enc.fingerprint, "data": data}


@eval_app.command("zeroshot")
def zeroshot(
    data: Annotated[str, typer.Option(help="ImageFolder dir, CSV of image,label, or toyworld:[v1:]SPLIT/TASK "
                                           "(SPLIT: train | val | test | heldout | heldout-dashed; "
                                           "TASK: shape | colour | novel | rotated)")],
    model: ModelOpt = None,
    templates: Annotated[list[str] | None, typer.Option("--templates", "-t",
                                                        help="template set name or a template with {}")] = None,
    descriptors: Annotated[Path | None, typer.Option(help="descriptor JSON {class: [descriptor, ...]}")] = None,
    dimensions: DimsOpt = None,
    n: NOpt = 1000,
    out: OutOpt = None,
) -> None:
    """Zero-shot top-1/top-5 accuracy of a label set, optionally at several Matryoshka dims."""
    from vlserve.evaluation.metrics import class_embeddings, descriptor_report, zero_shot_report
    from vlserve.zeroshot.templates import resolve_templates

    ds, enc, dims, t0, img = _embedded("labelled", data, n, model, dimensions)
    if descriptors is not None:
        from vlserve.zeroshot.descriptors import load_descriptor_file
        from vlserve.zeroshot.heads import DescriptorHead

        head = DescriptorHead.build(enc, load_descriptor_file(descriptors))
        missing = sorted(set(ds.classes) - set(head.classes))
        if missing:
            raise InvalidInput(f"{descriptors}: no descriptors for class(es) {', '.join(missing)}")
        report = descriptor_report(head, img, ds.labels, dims)
        method: dict[str, Any] = {"method": "descriptors", "descriptors": str(descriptors)}
    else:
        tmpl = resolve_templates(templates, ds.templates)
        report = zero_shot_report(img, class_embeddings(enc, ds.classes, tmpl), ds.labels, ds.classes, dims)
        method = {"method": "templates", "templates": tmpl if len(tmpl) <= 10 else f"{len(tmpl)} templates"}
    _emit({"task": "zeroshot", **_about(enc, data), **method, "seconds": round(time.time() - t0, 2), **report}, out)


@eval_app.command("retrieval")
def retrieval(
    data: Annotated[str, typer.Option(help="CSV of image,caption (several rows per image allowed) or toyworld:SPLIT")],
    model: ModelOpt = None,
    dimensions: DimsOpt = None,
    n: NOpt = 1000,
    out: OutOpt = None,
) -> None:
    """Text->image and image->text recall@1/5/10 (toy world: also attribute precision@10)."""
    from vlserve.evaluation.metrics import attribute_precision, retrieval_report

    ds, enc, dims, t0, img = _embedded("captioned", data, n, model, dimensions)
    txt = enc.encode_texts(ds.captions)
    report = retrieval_report(img, txt, ds.caption_image, dims)
    if ds.scenes is not None:
        from vlserve.toyworld.queries import attribute_queries

        queries, specs = attribute_queries()
        hits = np.array([[spec.satisfied_by(s.objects) for s in ds.scenes] for spec in specs])
        report["attribute_queries"] = {"n": len(queries), "examples": queries[:3],
                                       "precision@10": attribute_precision(img, enc.encode_texts(queries), hits, dims)}
    _emit({"task": "retrieval", **_about(enc, data), "seconds": round(time.time() - t0, 2), **report}, out)


@eval_app.command("detection")
def detection(
    data: Annotated[str, typer.Option(help="toyworld:SPLIT (multi-object v2 scenes; SPLIT: test | val | heldout) "
                                           "or a COCO annotation file (instances.json)")] = "toyworld:test",
    model: Annotated[str | None, typer.Option("--model", "-m", help="detector spec (OWL-ViT / OWLv2; default: "
                                                                 "VLSERVE_DETECTOR_MODEL)")] = None,
    images: Annotated[Path | None, typer.Option(help="COCO file's image folder (default: beside the file)")] = None,
    threshold: Annotated[float, typer.Option(help="lowest score kept (AP wants a low one)")] = 0.01,
    nms: Annotated[float, typer.Option("--nms", help="per-query NMS IoU (1: off)")] = 0.5,
    top_k: Annotated[int, typer.Option(help="boxes kept per image")] = 100,
    n: NOpt = 300,
    out: OutOpt = None,
) -> None:
    """COCO AP (pycocotools) of a detector: text queries (shapes; colour+shape), image queries and a
    per-style breakdown on toy scenes, or text queries by category name on a COCO file."""
    from vlserve.cli.common import load_detector
    from vlserve.detection.engine import ObjectDetector
    from vlserve.evaluation.detection import coco_file_report, toy_detection_report

    if data.startswith("toyworld:") and data.removeprefix("toyworld:") not in ("val", "test", "heldout"):
        raise InvalidInput(f"--data: toy-world detection scenes come from val, test or heldout, got {data!r}",
                           field="data")
    if not data.startswith("toyworld:") and not Path(data).is_file():
        raise InvalidInput(f"--data: {data!r} is neither toyworld:SPLIT nor a COCO annotation file", field="data")
    det = ObjectDetector(load_detector(model))
    t0 = time.time()
    with tqdm(desc="images", unit="img") as bar:
        if data.startswith("toyworld:"):
            report = toy_detection_report(det, data.removeprefix("toyworld:"), n, threshold, nms, top_k,
                                          progress=bar.update)
        else:
            report = coco_file_report(det, Path(data), images, n, threshold, nms, top_k, progress=bar.update)
    _emit({"task": "detection", "model": det.model.spec.raw, "fingerprint": det.model.fingerprint, "data": data,
           "seconds": round(time.time() - t0, 2), **report}, out)


@eval_app.command("segmentation")
def segmentation(
    data: Annotated[str, typer.Option(help="toyworld:SPLIT (v2 scenes of 1-4 objects; SPLIT: test | heldout)")]
    = "toyworld:test",
    model: ModelOpt = None,
    methods: Annotated[str, typer.Option(help="comma list of dense methods: vanilla, maskclip, sclip, clearclip, "
                                              "denseclip (a trained head)")]
    = "vanilla,maskclip",
    head: Annotated[Path | None, typer.Option(help="DenseCLIP head folder for denseclip (default: the model's "
                                                   "embedded head)")] = None,
    upscale: Annotated[int, typer.Option(help="feed the tower the image this many times its input size "
                                              "(a finer grid; ResNet towers)")] = 1,
    n: NOpt = 300,
    out: OutOpt = None,
) -> None:
    """Pixel-text segmentation mIoU (torchmetrics) of dense methods on toy scenes: the 6 shapes and
    background, and colour-conditioned labels; each training-free method's background threshold is
    chosen on validation scenes, the DenseCLIP head has its own background."""
    from vlserve.dense.service import default_head_dir
    from vlserve.dense.towers import METHODS
    from vlserve.evaluation.segmentation import toy_segmentation_report

    split = data.removeprefix("toyworld:")
    if not data.startswith("toyworld:") or split not in ("test", "heldout"):
        raise InvalidInput(f"--data: segmentation scenes come from toyworld:test or toyworld:heldout, got {data!r}",
                           field="data")
    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in (*METHODS, "denseclip")]
    if unknown or not chosen:
        raise InvalidInput(f"--methods: unknown {', '.join(unknown) or '(none given)'}; methods: "
                           f"{', '.join(METHODS)}, denseclip", field="methods")
    if not 1 <= upscale <= 4:
        raise InvalidInput(f"--upscale must be in 1..4, got {upscale}", field="upscale")
    enc = load_model(model)
    head_dir = head or default_head_dir(enc)
    if "denseclip" in chosen and head_dir is None:
        raise InvalidInput("--methods denseclip needs a DenseCLIP head: --head DIR (this model has no embedded "
                           "head)", field="head")
    t0 = time.time()
    with tqdm(desc="images", unit="img") as bar:
        report = toy_segmentation_report(enc, chosen, split, n, upscale=upscale, head_dir=head_dir,
                                         progress=bar.update)
    _emit({"task": "segmentation", **_about(enc, data), "seconds": round(time.time() - t0, 2), **report}, out)
