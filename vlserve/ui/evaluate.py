"""The Evaluate tab: zero-shot accuracy of a labelled image folder (``FOLDER/CLASS/IMAGE``, server-side or
an uploaded zip) through the gateway's ``/v1/classify``, at each Matryoshka dimension of the model:
top-1/top-5, a confusion matrix and the accuracy-vs-dimension curve."""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vlserve.evaluation.data import IMAGE_SUFFIXES
from vlserve.ui.gateway_api import GatewayAPI, GatewayError

MAX_IMAGES = 2000
BATCH = 32


def labelled_folder(root: Path) -> tuple[list[Path], list[str], list[str]]:
    """(image files, their class names, the classes) of ``root/CLASS/IMAGE``."""
    if not root.is_dir():
        raise GatewayError(f"No such folder on the server: {root}")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files = [(f, c) for c in classes for f in sorted((root / c).rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES]
    if len(classes) < 2 or not files:
        raise GatewayError(f"{root}: expected class sub-folders holding images (FOLDER/CLASS/IMAGE), "
                           f"found {len(classes)} class folder(s) and {len(files)} image(s).")
    if len(files) > MAX_IMAGES:
        raise GatewayError(f"{root}: {len(files)} images; the UI evaluates at most {MAX_IMAGES} "
                           f"(use `vlserve eval zeroshot` for more).")
    return [f for f, _ in files], [c for _, c in files], classes


def unpack_zip(path: str) -> Path:
    """An uploaded zip of ``CLASS/IMAGE`` (or one top folder holding them) unpacked to a temporary folder."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise GatewayError(f"{Path(path).name} is not a zip file.") from e
    out = Path(tempfile.mkdtemp(prefix="vlserve-eval-"))
    with archive:
        for member in archive.infolist():
            target = (out / member.filename).resolve()
            if not target.is_relative_to(out.resolve()):
                raise GatewayError(f"The zip holds a path outside itself ({member.filename}); refused.")
        archive.extractall(out)
    subdirs = [d for d in out.iterdir() if d.is_dir() and not d.name.startswith("__")]
    if len(subdirs) == 1 and not any(f.is_file() for f in subdirs[0].iterdir()):
        return subdirs[0]
    return out


def evaluate(api: GatewayAPI, root: Path, dims: list[int],
             progress: Callable[[float, str], None] | None = None) -> dict[str, Any]:
    """Top-1/top-5 at each dimension (full last), and the confusion matrix at full dimension."""
    files, truth, classes = labelled_folder(root)
    images = [f.read_bytes() for f in files]
    y = np.array([classes.index(c) for c in truth])
    dims = sorted(set(dims)) or [0]
    by_dim: dict[int, dict[str, float]] = {}
    confusion = np.zeros((len(classes), len(classes)), np.int64)
    steps = len(dims) * ((len(images) + BATCH - 1) // BATCH)
    done = 0
    for d in dims:
        ranked: list[list[str]] = []
        for start in range(0, len(images), BATCH):
            answer = api.classify(images[start:start + BATCH], labels=classes, top_k=min(5, len(classes)),
                                  dimensions=d or None)
            ranked += [[entry["label"] for entry in r["labels"]] for r in answer["results"]]
            done += 1
            if progress:
                progress(done / steps, f"dimension {d or 'full'}: {min(start + BATCH, len(images))}/{len(images)}")
        top1 = np.array([classes.index(r[0]) for r in ranked])
        top5 = np.array([c in r for c, r in zip(truth, ranked, strict=True)])
        by_dim[d] = {"top1": float((top1 == y).mean()), "top5": float(top5.mean())}
        if d == dims[-1]:
            np.add.at(confusion, (y, top1), 1)
    return {"n": len(images), "classes": classes, "by_dim": by_dim, "confusion": confusion}
