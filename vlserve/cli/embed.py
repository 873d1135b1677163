"""``vlserve embed``, ``classify``, ``info`` and ``models``: one model, in-process."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vlserve.cli.common import (
    DeviceOpt,
    DimsOpt,
    ModelOpt,
    PrecisionOpt,
    check_files,
    load_model,
    naming_files,
    print_json,
    settings,
)
from vlserve.errors import InvalidInput


def embed(
    model: ModelOpt = None,
    image: Annotated[list[Path] | None, typer.Option("--image", "-i", help="image file (repeatable)")] = None,
    text: Annotated[list[str] | None, typer.Option("--text", "-t", help="text (repeatable)")] = None,
    dimensions: DimsOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
) -> None:
    """Embed images and/or texts; print JSON with the embeddings, dims and model fingerprint."""
    from vlserve.matryoshka import truncate

    if not image and not text:
        raise InvalidInput("nothing to embed: give --image PATH and/or --text STR")
    check_files(image or [])
    blobs = [p.read_bytes() for p in image or []]
    enc = load_model(model, device, precision)
    out: dict[str, Any] = {"model": enc.spec.raw, "fingerprint": enc.fingerprint, "family": enc.family,
                           "dimensions": dimensions or enc.embed_dim, "full_dimensions": enc.embed_dim}
    if blobs:
        with naming_files(image or []):
            emb = truncate(enc.encode_images(blobs), dimensions)
        out["images"] = [{"path": str(p), "embedding": v.round(6).tolist()} for p, v in zip(image or [], emb,
                                                                                          strict=True)]
    if text:
        emb = truncate(enc.encode_texts(text), dimensions)
        out["texts"] = [{"text": t, "embedding": v.round(6).tolist()} for t, v in zip(text, emb, strict=True)]
    print_json(out)


def models() -> None:
    """List the model families, backends (dual encoders and detectors) and spec forms vlserve understands."""
    from vlserve.models.spec import SPEC_FORMS, aliases

    print_json({  # the scoring rules of vlserve.models.base.RULES, without importing torch
        "families": {"clip": "softmax(exp(logit_scale) * cos)",
                     "siglip": "sigmoid(exp(logit_scale) * cos + logit_bias)",
                     "align": "softmax(cos / temperature)"},
        "backends": {"open_clip": ["CLIP", "SigLIP"], "hf": ["CLIPModel", "SiglipModel", "AlignModel"]},
        "detectors": {"hf": ["OwlViTForObjectDetection", "Owlv2ForObjectDetection"]},
        "aliases": {k: str(v) for k, v in aliases().items()},
        "spec_forms": [f.split("  ")[0].strip() for f in SPEC_FORMS],
    })


def info(model: ModelOpt = None, device: DeviceOpt = None, precision: PrecisionOpt = None) -> None:
    """Load a model and print what vlserve knows about it (family, dims, fingerprint...)."""
    print_json(load_model(model, device, precision).info())


def classify(
    images: Annotated[list[Path], typer.Argument(help="image files")],
    model: ModelOpt = None,
    labels: Annotated[str | None, typer.Option(help="comma-separated labels")] = None,
    descriptors: Annotated[Path | None, typer.Option(help="descriptor JSON {class: [descriptor, ...]}")] = None,
    templates: Annotated[list[str] | None, typer.Option("--templates", "-t",
                                                        help="template set (openai, simple, photo, plain) or "
                                                             "a template with {}")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k")] = 5,
    multi_label: Annotated[bool | None, typer.Option("--multi-label/--single-label",
                                                     help="default: the family's own rule")] = None,
    abstain_threshold: Annotated[float | None, typer.Option(help="flag results whose top score is below this")] = None,
    dimensions: DimsOpt = None,
) -> None:
    """Zero-shot classification of images against labels or a descriptor file; prints JSON."""
    from vlserve.models.text_cache import TextEmbeddingCache
    from vlserve.zeroshot.classifier import ZeroShotClassifier
    from vlserve.zeroshot.descriptors import load_descriptor_file
    from vlserve.zeroshot.templates import resolve_templates, template_set

    if (labels is None) == (descriptors is None):
        raise InvalidInput("give exactly one of --labels a,b,c or --descriptors FILE")
    if descriptors is not None and templates:
        raise InvalidInput("--templates applies to --labels; descriptor prompts follow the descriptor rule",
                           field="templates")
    check_files(images)
    s = settings()
    enc = load_model(model)
    clf = ZeroShotClassifier(enc, TextEmbeddingCache(s.cache_dir / "text_embeddings.sqlite"),
                             max_labels=s.max_labels)
    if descriptors is not None:
        head: Any = clf.descriptors_head(load_descriptor_file(descriptors))
    else:
        label_list = [x.strip() for x in (labels or "").split(",") if x.strip()]
        head = clf.labels_head(label_list, resolve_templates(templates, template_set("photo")))
    with naming_files(images):
        preds = clf.classify([p.read_bytes() for p in images], head, top_k, multi_label, abstain_threshold,
                             dimensions)
    print_json({"model": enc.spec.raw, "fingerprint": enc.fingerprint, "head": head.kind,
                 "rule": preds[0].rule, "multi_label": preds[0].multi_label,
                 "results": [{"image": str(p), **pr.to_dict()} for p, pr in zip(images, preds, strict=True)]})
