"""The one parser for model spec strings.

Forms::

    toy                                         the embedded default (an alias, see below)
    open_clip:ViT-B-32/laion2b_s34b_b79k        architecture / pretrained tag (open_clip's cache)
    open_clip:ViT-B-32?init=random              architecture with seeded random weights (benchmarks;
                                                seed 0 unless ``&seed=N``: a spec is always the same weights)
    open_clip:local-dir:/path                   open_clip_config.json + weights in a folder
    open_clip:/path/ckpt.safetensors?arch=ViT-B-32   a checkpoint file and its architecture
    hf:openai/clip-vit-base-patch32             a Hugging Face hub id (CLIP, SigLIP or ALIGN; OWL-ViT or
                                                OWLv2 for detection)
    hf:/local/dir                               a transformers save_pretrained folder

An alias names a local folder: an open_clip local-dir (``open_clip_config.json``), or a transformers
``save_pretrained`` folder (``config.json``, no ``open_clip_config.json``), which then loads as
``hf:/that/folder`` would (a CLIP dual encoder, or an OWL-ViT / OWLv2 detector). Aliases are
registered from above, never imported by this layer: :func:`register_alias` at run time, or an entry
point in the ``vlserve.model_aliases`` group whose object is the folder (the toy world registers
``toy`` this way in ``pyproject.toml``).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl

from vlserve.errors import UnknownModelSpec

SCHEMES = ("open_clip", "hf")
ALIAS_GROUP = "vlserve.model_aliases"
_ALIASES: dict[str, Path] = {}
_loaded_entry_points = False
CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
SPEC_FORMS = (
    "toy",
    "open_clip:ARCH/PRETRAINED_TAG        e.g. open_clip:ViT-B-32/laion2b_s34b_b79k",
    "open_clip:ARCH?init=random[&seed=N]  seeded random weights (default seed 0), for benchmarks",
    "open_clip:local-dir:/path            folder with open_clip_config.json + weights",
    "open_clip:/path/ckpt.safetensors?arch=ARCH",
    "hf:ORG/NAME                          e.g. hf:google/siglip-base-patch16-224",
    "hf:/path/to/save_pretrained_dir      CLIPModel, SiglipModel or AlignModel (OWL-ViT / OWLv2: detectors)",
)


def register_alias(name: str, folder: str | Path) -> None:
    """Let ``name`` stand for ``folder`` (an open_clip local-dir or a transformers folder)."""
    _ALIASES[name] = Path(folder)


def aliases() -> dict[str, Path]:
    """Registered aliases, including those declared by installed packages' entry points."""
    global _loaded_entry_points
    if not _loaded_entry_points:
        _loaded_entry_points = True
        for ep in entry_points(group=ALIAS_GROUP):
            _ALIASES.setdefault(ep.name, Path(ep.load()))
    return dict(_ALIASES)


@dataclass(frozen=True)
class ModelSpec:
    raw: str
    backend: Literal["open_clip", "hf"]
    arch: str | None = None
    pretrained: str | None = None  # open_clip tag or checkpoint file
    local_dir: str | None = None
    hub_id: str | None = None
    random_init: bool = False
    seed: int = 0  # the torch seed of ``?init=random`` weights

    @property
    def canonical(self) -> str:
        if self.raw in aliases():
            return self.raw
        if self.backend == "hf":
            return f"hf:{self.local_dir or self.hub_id}"
        if self.local_dir:
            return f"open_clip:local-dir:{self.local_dir}"
        if self.random_init:
            return f"open_clip:{self.arch}?init=random" + (f"&seed={self.seed}" if self.seed else "")
        if self.pretrained and _looks_like_path(self.pretrained):
            return f"open_clip:{self.pretrained}?arch={self.arch}"
        return f"open_clip:{self.arch}/{self.pretrained}"


def _looks_like_path(s: str) -> bool:
    return s.startswith(("/", "./", "../", "~")) or s.endswith(CHECKPOINT_SUFFIXES)


def _known_archs() -> list[str]:
    import open_clip

    return list(open_clip.list_models())


def _unknown(spec: str, why: str) -> UnknownModelSpec:
    forms = " | ".join(f.split("  ")[0].strip() for f in SPEC_FORMS)
    return UnknownModelSpec(f"model spec {spec!r}: {why}. Known forms: {forms}", field="model")


def parse_spec(spec: str) -> ModelSpec:
    """Parse ``spec`` or raise :class:`UnknownModelSpec` listing what is known."""
    spec = spec.strip()
    if not spec:
        raise _unknown(spec, "empty")
    known_aliases = aliases()
    if spec in known_aliases:
        return _alias_spec(spec, known_aliases[spec])
    scheme, sep, body = spec.partition(":")
    if not sep or scheme not in SCHEMES:
        raise _unknown(spec, f"unknown scheme {scheme!r}; known schemes: {', '.join(SCHEMES)}; "
                             f"aliases: {', '.join(known_aliases) or '(none)'}")
    body, _, query = body.partition("?")
    try:
        opts = dict(parse_qsl(query, strict_parsing=True)) if query else {}
    except ValueError:
        raise _unknown(spec, f"cannot parse options {query!r} (expected key=value&...)") from None
    if not body:
        raise _unknown(spec, "nothing after the scheme")
    if scheme == "hf":
        if opts:
            raise _unknown(spec, f"hf specs take no options, got {sorted(opts)}")
        if _looks_like_path(body) or Path(body).is_dir():
            return ModelSpec(raw=spec, backend="hf", local_dir=str(Path(body).expanduser()))
        return ModelSpec(raw=spec, backend="hf", hub_id=body)
    return _parse_open_clip(spec, body, opts)


def _alias_spec(name: str, folder: Path) -> ModelSpec:
    """An alias's folder: a transformers folder loads as ``hf:``, anything else as an open_clip local-dir
    (whose loader says what is missing when the folder is neither)."""
    if (folder / "config.json").is_file() and not (folder / "open_clip_config.json").is_file():
        return ModelSpec(raw=name, backend="hf", local_dir=str(folder))
    return ModelSpec(raw=name, backend="open_clip", local_dir=str(folder))


def _parse_open_clip(spec: str, body: str, opts: dict[str, str]) -> ModelSpec:
    unknown_opts = set(opts) - {"arch", "init", "seed"}
    if unknown_opts:
        raise _unknown(spec, f"unknown options {sorted(unknown_opts)}; known: arch, init, seed")
    if "seed" in opts and opts.get("init") != "random":
        raise _unknown(spec, "seed= applies to ?init=random only")
    if body.startswith("local-dir:"):
        path = body.removeprefix("local-dir:")
        if not path:
            raise _unknown(spec, "empty path after local-dir:")
        return ModelSpec(raw=spec, backend="open_clip", local_dir=str(Path(path).expanduser()))
    if _looks_like_path(body):
        arch = opts.get("arch")
        if not arch:
            raise _unknown(spec, "a checkpoint file needs its architecture: add ?arch=NAME (e.g. ?arch=ViT-B-32)")
        _check_arch(spec, arch)
        return ModelSpec(raw=spec, backend="open_clip", arch=arch, pretrained=str(Path(body).expanduser()))
    arch, _, tag = body.partition("/")
    _check_arch(spec, arch)
    if opts.get("init") == "random":
        if tag:
            raise _unknown(spec, "give either a pretrained tag or ?init=random, not both")
        seed = opts.get("seed", "0")
        if not seed.isdigit():
            raise _unknown(spec, f"seed={seed!r}: expected a non-negative integer")
        return ModelSpec(raw=spec, backend="open_clip", arch=arch, random_init=True, seed=int(seed))
    if "init" in opts:
        raise _unknown(spec, f"init={opts['init']!r}: the only value is 'random'")
    import open_clip

    tags = list(open_clip.list_pretrained_tags_by_model(arch))
    if not tag:
        raise _unknown(spec, f"no pretrained tag for {arch}; known tags: {', '.join(tags) or '(none)'}; "
                             "or ?init=random for random weights")
    if tag not in tags:
        raise _unknown(spec, f"unknown pretrained tag {tag!r} for {arch}; known tags: {', '.join(tags) or '(none)'}")
    return ModelSpec(raw=spec, backend="open_clip", arch=arch, pretrained=tag)


def _check_arch(spec: str, arch: str) -> None:
    known = _known_archs()
    if arch not in known:
        raise _unknown(spec, f"unknown open_clip architecture {arch!r}; known: {', '.join(known)}")
