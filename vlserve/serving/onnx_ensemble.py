"""The ONNX runtime as Triton runs it best: the towers on the ``onnxruntime`` backend, in ensembles.

``vlserve repo build --runtime onnx`` exports the towers (:mod:`vlserve.models.onnx_export`) and
writes, for prefix ``P``::

    P image_encoder          ensemble   P image_preprocess -> P image_tower -> P embedding_postprocess
    P image_preprocess       python     IMAGE | IMAGE_RAW, DIMENSIONS -> PIXELS [3, H, W], DIMS
    P image_tower            onnxruntime  pixels [3, H, W] -> embeddings [D] (L2-normalised)
    P text_encoder           ensemble   P text_tokenize -> P text_tower -> P embedding_postprocess
    P text_tokenize          python     TEXT, DIMENSIONS -> the tokenizer's tensors, DIMS, MODEL_INFO
    P text_tower             onnxruntime  token tensors -> embeddings [D]
    P embedding_postprocess  python     EMBEDDINGS, DIMS -> EMBEDDING (Matryoshka cut, re-normalised)

Clients see exactly the ``image_encoder`` / ``text_encoder`` names and tensors of the torch runtime;
a bad request is refused by the step that reads it (a bad image or ``DIMENSIONS`` by the
preprocess step, before any tower runs) with the same INVALID_ARG. Decoding, resizing and
tokenisation stay the encoder's own (the python steps load the encoder on the CPU for its exact
transform and tokenizer), so both runtimes see the same tensors. ``zero_shot_classifier`` runs its
towers under onnxruntime inside the python backend (``RUNTIME=onnx``: its label cache and scoring
rule are Python); ``pixel_text`` stays on torch (the dense methods rewire the tower's last block).

On a GPU the tower configs switch on onnxruntime's TensorRT execution provider in FP16, with an
optimisation profile over the batch axis and an engine cache, so the engine is built once per
GPU, not at every start. ``tower_backend="python"`` is for a tritonserver without the onnxruntime
backend (the ``nvidia-pytriton`` wheel ships only the python backend): the towers then run the same
graph files through onnxruntime inside the python backend, under the same names and tensors, so the
ensembles and every other step are exactly what a GPU deployment runs.

Text tensors are the encoder's own tokenisation (open_clip: padded to the context; transformers
CLIP/ALIGN: padded to the request's longest text, which is exact for those families), so Triton
batches the tower over requests of equal length.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from vlserve.api.tensors import DIMENSIONS, EMBEDDING, IMAGE, IMAGE_RAW, TEXT_ENCODER, ModelIO, TensorSpec

TOWER_BACKENDS = ("onnxruntime", "python")
DIMS = TensorSpec("DIMS", "INT32", (1,), doc="Matryoshka dimensions for this row (0: the full embedding)")
EMBEDDINGS = TensorSpec("EMBEDDINGS", "FP32", (-1,), doc="the tower's L2-normalised embedding")
ENSEMBLE_STEPS = ("image_preprocess", "image_tower", "text_tokenize", "text_tower", "embedding_postprocess")
TRT_CACHE = "/tmp/vlserve-trt-cache"


def step_models(manifest: dict[str, Any]) -> dict[str, ModelIO]:
    """The tensor contract of each step for the towers described by an ``onnx.json`` manifest."""
    h, w = manifest["image_size"]
    d = int(manifest["embed_dim"])
    pixels = TensorSpec("PIXELS", "FP32", (3, h, w), doc="preprocessed pixels")
    tokens = tuple(TensorSpec(n, "INT64", (-1,), doc="tokenizer output") for n in manifest["text_inputs"])
    model_info = TEXT_ENCODER.output("MODEL_INFO")
    return {
        "image_preprocess": ModelIO("image_preprocess", "images -> pixels", (IMAGE, IMAGE_RAW, DIMENSIONS),
                                    (pixels, DIMS)),
        "image_tower": ModelIO("image_tower", "pixels -> embeddings", (TensorSpec("pixels", "FP32", (3, h, w)),),
                               (TensorSpec("embeddings", "FP32", (d,)),)),
        "text_tokenize": ModelIO("text_tokenize", "texts -> tokens", TEXT_ENCODER.inputs,
                                 (*tokens, DIMS, model_info)),
        "text_tower": ModelIO("text_tower", "tokens -> embeddings", tokens, (TensorSpec("embeddings", "FP32", (d,)),)),
        "embedding_postprocess": ModelIO("embedding_postprocess", "embeddings -> Matryoshka embeddings",
                                         (EMBEDDINGS, DIMS), (EMBEDDING,)),
    }


def io_block(io: ModelIO) -> str:
    inputs = ",\n".join(t.pbtxt() for t in io.inputs)
    outputs = ",\n".join(t.pbtxt() for t in io.outputs)
    return f"input [\n{inputs}\n]\noutput [\n{outputs}\n]"


def params_block(params: dict[str, str]) -> str:
    return "\n".join(f'parameters: {{ key: "{k}" value: {{ string_value: "{v}" }} }}' for k, v in params.items())


def batching_block(opts: Any) -> str:
    preferred = ", ".join(str(b) for b in opts.preferred_batch_sizes if b <= opts.max_batch_size)
    return (f"dynamic_batching {{\n  preferred_batch_size: [ {preferred} ]\n"
            f"  max_queue_delay_microseconds: {opts.max_queue_delay_us}\n}}")


def python_step_config(name: str, kind: str, io: ModelIO, spec: str, opts: Any) -> str:
    """A preprocessing step: python backend on the CPU (decoding and tokenising are CPU work)."""
    return f"""# vlserve {kind} (an ONNX-runtime ensemble step): written by `vlserve repo build --runtime onnx`
name: "{name}"
backend: "python"
max_batch_size: {opts.max_batch_size}
{io_block(io)}
{batching_block(opts)}
instance_group [ {{ count: {opts.instances} kind: KIND_CPU }} ]
{params_block({"MODEL_SPEC": spec, "DEVICE": "cpu", **opts.parameters})}
"""


def _profile(io: ModelIO, batch: int, manifest: dict[str, Any], tokens: int) -> str:
    """TensorRT optimisation-profile shapes (``name:AxBxC,...``) at batch ``batch`` and ``tokens`` per text."""
    parts = []
    for t in io.inputs:
        dims = [str(tokens) if d == -1 else str(d) for d in t.dims]
        parts.append(f"{t.name}:" + "x".join([str(batch), *dims]))
    return ",".join(parts)


def tower_config(name: str, kind: str, io: ModelIO, file: str, manifest: dict[str, Any], opts: Any,
                 tower_backend: str) -> str:
    """An ONNX tower: the onnxruntime backend (TensorRT FP16 on GPU instances), or the python backend
    running the same graph through onnxruntime where Triton has no onnxruntime backend."""
    head = f"""# vlserve {kind} (an ONNX-runtime ensemble step): written by `vlserve repo build --runtime onnx`
name: "{name}"
max_batch_size: {opts.max_batch_size}
{io_block(io)}
{batching_block(opts)}
instance_group [ {{ count: {opts.instances} kind: KIND_AUTO }} ]
"""
    if tower_backend == "python":
        return head.replace(f'name: "{name}"\n', f'name: "{name}"\nbackend: "python"\n') + params_block(
            {"ONNX_FILE": file, "MODEL_SPEC": manifest["spec"]}) + "\n"
    context = int(manifest.get("context_length") or max(v["length"] for v in manifest["text_inputs"].values()))
    trt = {"precision_mode": "FP16", "max_workspace_size_bytes": str(1 << 30), "trt_engine_cache_enable": "1",
           "trt_engine_cache_path": f"{TRT_CACHE}/{name}", "trt_timing_cache_enable": "1",
           # the batch axis from 1 to max_batch_size, texts from 1 token to the context length
           "trt_profile_min_shapes": _profile(io, 1, manifest, 1),
           "trt_profile_opt_shapes": _profile(io, max(opts.preferred_batch_sizes or (1,)), manifest, context),
           "trt_profile_max_shapes": _profile(io, opts.max_batch_size, manifest, context)}
    accel = "\n".join(f'      parameters {{ key: "{k}" value: "{v}" }}' for k, v in trt.items())
    head = head.replace(f'name: "{name}"\n', f'name: "{name}"\nbackend: "onnxruntime"\n'
                                              f'default_model_filename: "{file}"\n')
    return head + f"""optimization {{
  execution_accelerators {{
    gpu_execution_accelerator: [ {{
      name: "tensorrt"
{accel}
    }} ]
  }}
}}
"""


def ensemble_config(name: str, io: ModelIO, steps: list[tuple[str, dict[str, str], dict[str, str]]],
                    opts: Any) -> str:
    """An ensemble with the public tensor contract ``io``; ``steps``: (model, input_map, output_map)."""
    blocks = []
    for model, inputs, outputs in steps:
        maps = [f'      input_map {{ key: "{k}" value: "{v}" }}' for k, v in inputs.items()]
        maps += [f'      output_map {{ key: "{k}" value: "{v}" }}' for k, v in outputs.items()]
        blocks.append(f'    {{\n      model_name: "{model}"\n      model_version: -1\n' + "\n".join(maps) + "\n    }")
    return f"""# vlserve {io.name}: an ensemble written by `vlserve repo build --runtime onnx`
name: "{name}"
platform: "ensemble"
max_batch_size: {opts.max_batch_size}
{io_block(io)}
ensemble_scheduling {{
  step [
{",".join(chr(10) + b if i else b for i, b in enumerate(blocks))}
  ]
}}
"""


def model_py(kind: str) -> str:
    """A repository model's ``1/model.py``: one import of its adapter from the installed package."""
    return (f'"""vlserve {kind} (Triton python backend); the adapter is vlserve.serving.backend_models.{kind}."""\n\n'
            f"from vlserve.serving.backend_models.{kind} import TritonPythonModel\n\n"
            '__all__ = ["TritonPythonModel"]\n')


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)  # the same graph twice costs no disk
    except OSError:
        shutil.copy2(src, dst)


def write_ensembles(out: Path, prefix: str, spec: str, manifest: dict[str, Any], towers: Path, opts: Any,
                    tower_backend: str = "onnxruntime") -> list[Path]:
    """Write the ensemble layout for ``prefix`` under ``out``; ``towers`` is the exported graph folder
    (``image_encoder.onnx``, ``text_encoder.onnx``, ``onnx.json``), which must be
    ``out / f"{prefix}image_tower" / "1"``. Returns the model folders written."""
    from vlserve.api.tensors import IMAGE_ENCODER
    from vlserve.models.onnx_export import IMAGE_FILE, MANIFEST, TEXT_FILE

    if tower_backend not in TOWER_BACKENDS:
        from vlserve.errors import InvalidInput

        raise InvalidInput(f"tower backend must be one of {', '.join(TOWER_BACKENDS)}, got {tower_backend!r}",
                           field="tower_backend")
    io = step_models(manifest)
    p = prefix
    text_dir = out / f"{p}text_tower" / "1"
    text_dir.mkdir(parents=True, exist_ok=True)
    _link_or_copy(towers / TEXT_FILE, text_dir / TEXT_FILE)
    shutil.copy2(towers / MANIFEST, text_dir / MANIFEST)
    configs = {
        "image_preprocess": python_step_config(f"{p}image_preprocess", "image_preprocess", io["image_preprocess"],
                                               spec, opts),
        "text_tokenize": python_step_config(f"{p}text_tokenize", "text_tokenize", io["text_tokenize"], spec, opts),
        "embedding_postprocess": python_step_config(f"{p}embedding_postprocess", "embedding_postprocess",
                                                    io["embedding_postprocess"], spec, opts),
        "image_tower": tower_config(f"{p}image_tower", "image_tower", io["image_tower"], IMAGE_FILE, manifest, opts,
                                    tower_backend),
        "text_tower": tower_config(f"{p}text_tower", "text_tower", io["text_tower"], TEXT_FILE, manifest, opts,
                                   tower_backend),
        "image_encoder": ensemble_config(f"{p}image_encoder", IMAGE_ENCODER, [
            (f"{p}image_preprocess", {t.name: t.name for t in IMAGE_ENCODER.inputs},
             {"PIXELS": "pixels", "DIMS": "dims"}),
            (f"{p}image_tower", {"pixels": "pixels"}, {"embeddings": "embeddings"}),
            (f"{p}embedding_postprocess", {"EMBEDDINGS": "embeddings", "DIMS": "dims"}, {"EMBEDDING": "EMBEDDING"}),
        ], opts),
        "text_encoder": ensemble_config(f"{p}text_encoder", TEXT_ENCODER, [
            (f"{p}text_tokenize", {t.name: t.name for t in TEXT_ENCODER.inputs},
             {**{n: f"token_{n}" for n in manifest["text_inputs"]}, "DIMS": "dims", "MODEL_INFO": "MODEL_INFO"}),
            (f"{p}text_tower", {n: f"token_{n}" for n in manifest["text_inputs"]}, {"embeddings": "embeddings"}),
            (f"{p}embedding_postprocess", {"EMBEDDINGS": "embeddings", "DIMS": "dims"}, {"EMBEDDING": "EMBEDDING"}),
        ], opts),
    }
    written = []
    for kind, text in configs.items():
        folder = out / f"{p}{kind}"
        (folder / "1").mkdir(parents=True, exist_ok=True)
        (folder / "config.pbtxt").write_text(text)
        stale = folder / "1" / "model.py"
        if kind in ("image_preprocess", "text_tokenize", "embedding_postprocess"):
            stale.write_text(model_py(kind))
        elif kind.endswith("_tower") and tower_backend == "python":
            stale.write_text(model_py("onnx_tower"))
        else:
            stale.unlink(missing_ok=True)  # an ensemble or an onnxruntime model has no model.py
            onnx_dir = folder / "1" / "onnx"
            if kind.endswith("_encoder") and onnx_dir.is_dir():
                shutil.rmtree(onnx_dir)  # the python-backend layout of an earlier build
        written.append(folder)
    return written
