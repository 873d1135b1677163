"""Write Triton model repositories: one folder per model, ``config.pbtxt`` + ``1/model.py``.

Each ``model.py`` is one import of its adapter from :mod:`vlserve.serving.backend_models`, so the
adapter code lives once, in the installed package; the inputs and outputs come from
:mod:`vlserve.api.tensors`; the model spec string lives in each config's ``parameters``
(``MODEL_SPEC``). Instances use ``KIND_AUTO``: Triton places them on a GPU when one is present, on
the CPU otherwise, and the adapter picks the matching torch device (fp16 on CUDA).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vlserve.api.tensors import TRITON_MODELS
from vlserve.errors import InvalidInput
from vlserve.models.spec import parse_spec

MODELS = tuple(TRITON_MODELS)


@dataclass
class RepoOptions:
    max_batch_size: int = 64
    preferred_batch_sizes: tuple[int, ...] = (8, 16, 32)
    max_queue_delay_us: int = 2000
    instances: int = 1
    parameters: dict[str, str] = field(default_factory=dict)


def config_pbtxt(name: str, kind: str, spec: str, opts: RepoOptions) -> str:
    io = TRITON_MODELS[kind]
    inputs = ",\n".join(t.pbtxt() for t in io.inputs)
    outputs = ",\n".join(t.pbtxt() for t in io.outputs)
    params = {"MODEL_SPEC": spec, **opts.parameters}
    param_text = "\n".join(f'parameters: {{ key: "{k}" value: {{ string_value: "{v}" }} }}'
                           for k, v in params.items())
    preferred = ", ".join(str(b) for b in opts.preferred_batch_sizes if b <= opts.max_batch_size)
    return f"""# vlserve {kind}: written by `vlserve repo build` (vlserve.serving.repository)
name: "{name}"
backend: "python"
max_batch_size: {opts.max_batch_size}
input [
{inputs}
]
output [
{outputs}
]
dynamic_batching {{
  preferred_batch_size: [ {preferred} ]
  max_queue_delay_microseconds: {opts.max_queue_delay_us}
}}
instance_group [ {{ count: {opts.instances} kind: KIND_AUTO }} ]
{param_text}
"""


def build_repository(out: Path, spec: str, prefix: str = "", models: tuple[str, ...] = MODELS,
                     opts: RepoOptions | None = None) -> list[Path]:
    """Write (or overwrite) ``prefix + model`` folders for ``spec`` under ``out``."""
    parse_spec(spec)  # refuse unknown specs before writing anything
    opts = opts or RepoOptions()
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise InvalidInput(f"unknown repository model(s) {unknown}; known: {', '.join(MODELS)}")
    if prefix and not prefix.replace("_", "").replace("-", "").isalnum():
        raise InvalidInput(f"prefix {prefix!r} must be letters, digits, '_' or '-'")
    written = []
    for kind in models:
        folder = out / f"{prefix}{kind}"
        (folder / "1").mkdir(parents=True, exist_ok=True)
        (folder / "config.pbtxt").write_text(config_pbtxt(f"{prefix}{kind}", kind, spec, opts))
        (folder / "1" / "model.py").write_text(
            f'"""vlserve {kind} (Triton python backend); the adapter is vlserve.serving.backend_models.{kind}."""\n\n'
            f"from vlserve.serving.backend_models.{kind} import TritonPythonModel\n\n"
            '__all__ = ["TritonPythonModel"]\n')
        written.append(folder)
    return written
