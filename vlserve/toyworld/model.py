"""The toy model's architecture (an open_clip custom config) and its on-disk layout.

The layout is open_clip's own ``local-dir:`` format: ``open_clip_config.json`` holding
``model_cfg`` and ``preprocess_cfg``, next to ``open_clip_model.safetensors``. The standard CLIP
BPE tokenizer is used, so the tokenizer path is the real one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

MODEL_CFG: dict[str, Any] = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 96, "layers": [1, 2, 2, 1], "width": 24, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 4},
}
PREPROCESS_CFG: dict[str, Any] = {
    "size": 96,
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}
MATRYOSHKA_DIMS = (16, 32, 64, 128)
TOY_DIR = Path(__file__).resolve().parent.parent / "assets" / "toy"


def to_model_size(image: np.ndarray) -> np.ndarray:
    """Resize an RGB array to the model's input side the way its preprocessing does (bicubic on the
    shortest side, then a centre crop; toy images are square, so the crop keeps everything)."""
    size = PREPROCESS_CFG["size"]
    if image.shape[0] == image.shape[1] == size:
        return image
    from PIL import Image

    pil = Image.fromarray(image)
    scale = size / min(pil.size)
    pil = pil.resize((max(size, round(pil.width * scale)), max(size, round(pil.height * scale))),
                     Image.Resampling.BICUBIC)
    left, top = (pil.width - size) // 2, (pil.height - size) // 2
    return np.asarray(pil.crop((left, top, left + size, top + size)))


def save_open_clip_dir(model: Any, out: Path, model_cfg: dict[str, Any], extra: dict[str, Any] | None = None,
                       half: bool = True) -> Path:
    """Write ``model`` in open_clip's local-dir layout (fp16 safetensors by default)."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, str(out / "open_clip_model.safetensors"))
    config = {"model_cfg": model_cfg, "preprocess_cfg": PREPROCESS_CFG, **(extra or {})}
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return out
