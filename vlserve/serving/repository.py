"""Write Triton model repositories: one folder per model, ``config.pbtxt`` + ``1/model.py``.

Each ``model.py`` is one import of its adapter from :mod:`vlserve.serving.backend_models`, so the
adapter code lives once, in the installed package; the inputs and outputs come from
:mod:`vlserve.api.tensors`; the model spec string lives in each config's ``parameters``
(``MODEL_SPEC``). Instances use ``KIND_AUTO``: Triton places them on a GPU when one is present, on
the CPU otherwise, and the adapter picks the matching torch device (fp16 on CUDA).

The encoder models (``image_encoder``, ``text_encoder``, ``zero_shot_classifier``) serve the model
spec; the ``detector`` serves a detector spec (an OWL-ViT / OWLv2 checkpoint) and is written only
when one is given: without it the repository has no ``detector`` folder, and Triton answers a
detection request with "unknown model" (the client: not deployed).
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlserve.api.tensors import DETECTOR_MODELS, ENCODER_MODELS, TRITON_MODELS
from vlserve.errors import InvalidInput
from vlserve.models.spec import parse_spec
from vlserve.serving.onnx_ensemble import (
    ENSEMBLE_STEPS,
    TOWER_BACKENDS,
    batching_block,
    io_block,
    model_py,
    params_block,
    write_ensembles,
)

MODELS = tuple(TRITON_MODELS)


@dataclass
class RepoOptions:
    max_batch_size: int = 64
    preferred_batch_sizes: tuple[int, ...] = (8, 16, 32)
    max_queue_delay_us: int = 2000
    instances: int = 1
    parameters: dict[str, str] = field(default_factory=dict)


def config_pbtxt(name: str, kind: str, spec: str, opts: RepoOptions) -> str:
    return f"""# vlserve {kind}: written by `vlserve repo build` (vlserve.serving.repository)
name: "{name}"
backend: "python"
max_batch_size: {opts.max_batch_size}
{io_block(TRITON_MODELS[kind])}
{batching_block(opts)}
instance_group [ {{ count: {opts.instances} kind: KIND_AUTO }} ]
{params_block({"MODEL_SPEC": spec, **opts.parameters})}
"""


ONNX_MODELS = ("zero_shot_classifier",)  # python-backend models whose towers run under onnxruntime in-process
ENSEMBLE_MODELS = ("image_encoder", "text_encoder")  # ensembles around ONNX towers with --runtime onnx


def build_repository(out: Path, spec: str, prefix: str = "", models: tuple[str, ...] | None = None,
                     opts: RepoOptions | None = None, detector_spec: str | None = None,
                     runtime: str = "torch", tower_backend: str = "onnxruntime") -> list[Path]:
    """Write (or overwrite) ``prefix + model`` folders under ``out``: the encoder models for ``spec``,
    and the detector for ``detector_spec`` when given. ``models`` picks a subset (default: all of
    those). A full build (``models`` not given) without a detector spec removes a ``detector`` folder
    left by an earlier build, so a detector is never served with a stale spec.

    ``runtime="onnx"`` exports the towers and serves ``image_encoder`` / ``text_encoder`` as ensembles
    around ONNX towers on ``tower_backend`` (:mod:`vlserve.serving.onnx_ensemble`); the
    zero-shot classifier runs the same graphs under onnxruntime in the python backend."""
    parse_spec(spec)  # refuse unknown specs before writing anything
    if detector_spec is not None:
        parse_spec(detector_spec)
    opts = opts or RepoOptions()
    full_build = models is None
    if models is None:
        models = ENCODER_MODELS + (DETECTOR_MODELS if detector_spec is not None else ())
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise InvalidInput(f"unknown repository model(s) {unknown}; known: {', '.join(MODELS)}")
    if detector_spec is None and any(m in DETECTOR_MODELS for m in models):
        raise InvalidInput("the detector model needs a detector spec (an OWL-ViT / OWLv2 checkpoint): "
                           "--detector-model SPEC or VLSERVE_DETECTOR_MODEL", field="detector_model")
    if prefix and not prefix.replace("_", "").replace("-", "").isalnum():
        raise InvalidInput(f"prefix {prefix!r} must be letters, digits, '_' or '-'")
    if runtime not in ("torch", "onnx"):
        raise InvalidInput(f"runtime must be torch or onnx, got {runtime!r}", field="runtime")
    if tower_backend not in TOWER_BACKENDS:
        raise InvalidInput(f"tower backend must be one of {', '.join(TOWER_BACKENDS)}, got {tower_backend!r}",
                           field="tower_backend")
    onnx_params: dict[str, str] = {}
    written = []
    if runtime == "onnx":
        towers = f"{prefix}image_tower/1"
        manifest = export_onnx(out / towers, spec)
        onnx_params = {"RUNTIME": "onnx", "ONNX_DIR": towers}
        # the tower models hold the graphs, so they are written whichever models were asked for
        written += write_ensembles(out, prefix, spec, manifest, out / towers, opts, tower_backend)
        models = tuple(m for m in models if m not in ENSEMBLE_MODELS)
    elif any(m in ENSEMBLE_MODELS for m in models):
        for step in ENSEMBLE_STEPS:  # the steps of an earlier ONNX build would outlive their ensembles
            if (out / f"{prefix}{step}" / "config.pbtxt").is_file():
                shutil.rmtree(out / f"{prefix}{step}")
    for kind in models:
        folder = out / f"{prefix}{kind}"
        (folder / "1").mkdir(parents=True, exist_ok=True)
        model_spec = detector_spec if kind in DETECTOR_MODELS else spec
        assert model_spec is not None
        kind_opts = opts
        if onnx_params and kind in ONNX_MODELS:
            kind_opts = dataclasses.replace(opts, parameters={**opts.parameters, **onnx_params})
        (folder / "config.pbtxt").write_text(config_pbtxt(f"{prefix}{kind}", kind, model_spec, kind_opts))
        (folder / "1" / "model.py").write_text(model_py(kind))
        written.append(folder)
    if full_build and detector_spec is None:
        for kind in DETECTOR_MODELS:
            stale = out / f"{prefix}{kind}"
            if (stale / "config.pbtxt").is_file():
                shutil.rmtree(stale)
    return written


def export_onnx(folder: Path, spec: str) -> dict[str, Any]:
    """Export ``spec``'s towers into ``folder`` (the image tower's version folder); the manifest."""
    from vlserve.models import load_dual_encoder
    from vlserve.models.onnx_export import export_towers
    from vlserve.settings import Runtime

    return export_towers(load_dual_encoder(spec, Runtime(device="cpu", precision="fp32")), folder)
