"""The ``vlserve`` command line. Errors print one clear line on stderr and exit non-zero."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from vlserve.errors import VLServeError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="vlserve: vision-language retrieval and zero-shot classification.")


def _settings() -> Any:
    from vlserve.settings import Settings

    return Settings()


def _load(spec: str | None, device: str | None = None, precision: str | None = None) -> Any:
    from vlserve.models import Runtime, load_dual_encoder

    s = _settings()
    runtime = Runtime(device=device or s.device, precision=precision or s.precision, max_batch=s.max_batch,
                      max_image_pixels=s.max_image_pixels)
    return load_dual_encoder(spec or s.model, runtime)


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=None, separators=(",", ":")) + "\n")


ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="model spec (default: $VLSERVE_MODEL or toy)")]
DimsOpt = Annotated[int | None, typer.Option("--dimensions", "-d", help="Matryoshka truncation (re-normalised)")]
DeviceOpt = Annotated[str | None, typer.Option(help="auto | cpu | cuda[:N]")]
PrecisionOpt = Annotated[str | None, typer.Option(help="auto | fp32 | fp16 | bf16")]


@app.command()
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
        raise VLServeError("nothing to embed: give --image PATH and/or --text STR")
    blobs = []
    for p in image or []:
        if not p.is_file():
            raise VLServeError(f"image file not found: {p}")
        blobs.append(p.read_bytes())
    enc = _load(model, device, precision)
    out: dict[str, Any] = {"model": enc.spec.raw, "fingerprint": enc.fingerprint, "family": enc.family,
                           "dimensions": dimensions or enc.embed_dim, "full_dimensions": enc.embed_dim}
    if blobs:
        try:
            emb = truncate(enc.encode_images(blobs), dimensions)
        except VLServeError as e:  # name the file, not only its position
            raise type(e)(_name_item(e.message, [str(p) for p in image or []])) from None
        out["images"] = [{"path": str(p), "embedding": v.round(6).tolist()} for p, v in zip(image or [], emb,
                                                                                          strict=True)]
    if text:
        emb = truncate(enc.encode_texts(text), dimensions)
        out["texts"] = [{"text": t, "embedding": v.round(6).tolist()} for t, v in zip(text, emb, strict=True)]
    _print_json(out)


def _name_item(message: str, paths: list[str]) -> str:
    head, sep, rest = message.partition(":")
    if sep and head.startswith("image ") and head[6:].isdigit() and int(head[6:]) < len(paths):
        return f"{paths[int(head[6:])]}:{rest}"
    return message


@app.command()
def models() -> None:
    """List the model families, backends and spec forms vlserve understands."""
    from vlserve.models.spec import ALIASES, SPEC_FORMS

    _print_json({
        "families": {"clip": "softmax(exp(logit_scale) * cos)",
                     "siglip": "sigmoid(exp(logit_scale) * cos + logit_bias)",
                     "align": "softmax(cos / temperature)"},
        "backends": {"open_clip": ["CLIP", "SigLIP"], "hf": ["CLIPModel", "SiglipModel", "AlignModel"]},
        "aliases": {k: str(v) for k, v in ALIASES.items()},
        "spec_forms": [f.split("  ")[0].strip() for f in SPEC_FORMS],
    })


@app.command()
def info(model: ModelOpt = None, device: DeviceOpt = None, precision: PrecisionOpt = None) -> None:
    """Load a model and print what vlserve knows about it (family, dims, fingerprint...)."""
    _print_json(_load(model, device, precision).info())


@app.command()
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
    from vlserve.zeroshot.cache import TextEmbeddingCache
    from vlserve.zeroshot.classifier import ZeroShotClassifier
    from vlserve.zeroshot.descriptors import load_descriptor_file
    from vlserve.zeroshot.templates import resolve_templates, template_set

    if (labels is None) == (descriptors is None):
        raise VLServeError("give exactly one of --labels a,b,c or --descriptors FILE")
    if descriptors is not None and templates:
        raise VLServeError("--templates applies to --labels; descriptor prompts follow the descriptor rule")
    for p in images:
        if not p.is_file():
            raise VLServeError(f"image file not found: {p}")
    s = _settings()
    enc = _load(model)
    clf = ZeroShotClassifier(enc, TextEmbeddingCache(s.cache_dir / "text_embeddings.sqlite"),
                             max_labels=s.max_labels)
    if descriptors is not None:
        head: Any = clf.descriptors_head(load_descriptor_file(descriptors))
    else:
        label_list = [x.strip() for x in (labels or "").split(",") if x.strip()]
        head = clf.labels_head(label_list, resolve_templates(templates, template_set("photo")))
    try:
        preds = clf.classify([p.read_bytes() for p in images], head, top_k, multi_label, abstain_threshold,
                             dimensions)
    except VLServeError as e:
        raise type(e)(_name_item(e.message, [str(p) for p in images])) from None
    _print_json({"model": enc.spec.raw, "fingerprint": enc.fingerprint, "head": head.kind,
                 "rule": preds[0].rule, "multi_label": preds[0].multi_label,
                 "results": [{"image": str(p), **pr.to_dict()} for p, pr in zip(images, preds, strict=True)]})


def _register_subcommands() -> None:
    from vlserve.cli_eval import eval_app
    from vlserve.cli_serve import repo_app, serve
    from vlserve.cli_toyworld import toyworld_app

    app.command("serve")(serve)
    app.add_typer(repo_app, name="repo")

    app.add_typer(toyworld_app, name="toyworld")
    app.add_typer(eval_app, name="eval")
    from vlserve.cli_index import index_app
    app.add_typer(index_app, name="index")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _register_subcommands()
    try:
        app()
    except VLServeError as e:
        sys.stderr.write(f"error: {e.message}\n")
        sys.exit(2)
