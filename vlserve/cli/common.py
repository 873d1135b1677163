"""What every command group shares: options, settings and model loading, JSON printing, and the
one way an error leaves the CLI (one line on stderr, the exit code of its row in the error table)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vlserve.errors import ERROR_TABLE, NotFound, VLServeError, mapping_of

if TYPE_CHECKING:
    from vlserve.models.base import DualEncoder
    from vlserve.models.detector import Detector
    from vlserve.settings import Runtime, Settings

ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="model spec (default: $VLSERVE_MODEL or toy)")]
DimsOpt = Annotated[int | None, typer.Option("--dimensions", "-d", help="Matryoshka truncation (re-normalised)")]
DeviceOpt = Annotated[str | None, typer.Option(help="auto | cpu | cuda[:N]")]
PrecisionOpt = Annotated[str | None, typer.Option(help="auto | fp32 | fp16 | bf16")]


def exit_codes_text() -> str:
    """The exit-code list shown under ``vlserve --help`` (from the error table)."""
    codes = sorted((m.exit_code, t.code) for t, m in ERROR_TABLE.items())
    return "Exit codes: 0 success; " + "; ".join(
        f"{n} {code}" + (" (also a command-line usage error)" if code == "invalid_input" else "")
        for n, code in codes) + ". See docs/errors.md."


def settings() -> Settings:
    from vlserve.settings import Settings

    return Settings()


def runtime(device: str | None = None, precision: str | None = None, max_batch: int | None = None) -> Runtime:
    """The runtime from the settings, command-line options taking precedence."""
    return settings().runtime(device=device, precision=precision, max_batch=max_batch)


def load_model(spec: str | None, device: str | None = None, precision: str | None = None) -> DualEncoder:
    from vlserve.models import load_dual_encoder

    return load_dual_encoder(spec or settings().model, runtime(device, precision))


def load_detector(spec: str | None, device: str | None = None, precision: str | None = None) -> Detector:
    """The detector named by ``spec``, else by ``VLSERVE_DETECTOR_MODEL`` (there is no default detector)."""
    from vlserve.errors import InvalidInput
    from vlserve.models import load_detector as load

    spec = spec or settings().detector_model
    if not spec:
        raise InvalidInput("no detector model: give --model SPEC (an OWL-ViT / OWLv2 checkpoint, e.g. "
                           "hf:google/owlvit-base-patch32) or set VLSERVE_DETECTOR_MODEL", field="model")
    return load(spec, runtime(device, precision))


def print_json(obj: Any) -> None:
    """One compact JSON line on stdout."""
    sys.stdout.write(json.dumps(obj, indent=None, separators=(",", ":")) + "\n")


def check_files(paths: Sequence[Path]) -> None:
    for p in paths:
        if not p.is_file():
            raise NotFound(f"image file not found: {p}")


@contextmanager
def naming_files(paths: Sequence[Path | str], fields: tuple[str, ...] | None = None) -> Iterator[None]:
    """An error about item ``i`` of a batch names ``paths[i]`` instead of its position (only errors
    about one of ``fields`` when given, e.g. ``("image",)`` when other inputs are lists too)."""
    try:
        yield
    except VLServeError as e:
        if e.item is None or not 0 <= e.item < len(paths) or (fields is not None and e.field not in fields):
            raise
        raise type(e).rebuild(f"{paths[e.item]}: {e.message}", field=e.field) from None


def error_text(error: VLServeError) -> str:
    """``error: <message>`` on one line; further lines of the message (e.g. a log tail) follow, indented."""
    first, *rest = str(error).splitlines() or [""]
    return "\n".join([f"error: {first}", *(f"  {line}" for line in rest)]) + "\n"


def run(app: typer.Typer, args: Sequence[str] | None = None) -> None:
    """Run ``app``; a vlserve error prints :func:`error_text` and exits with its table's exit code."""
    try:
        app(args=None if args is None else list(args))
    except VLServeError as e:
        sys.stderr.write(error_text(e))
        sys.exit(mapping_of(e).exit_code)
