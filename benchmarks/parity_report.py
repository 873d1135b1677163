"""The parity figures of docs/fidelity.md: max |Δ| between vlserve and each reference library, per
family and per encoded file kind, on the tiny models the tests build (fp32, unit vectors).

The same helpers as ``tests/unit/test_reference_equivalence.py`` (which asserts <= 1e-5); this script
only writes the measured values, and the plain reference path's difference where vlserve departs.

    .venv/bin/python benchmarks/parity_report.py
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(Path(__file__).parent), str(ROOT / "tests"), str(ROOT / "tests" / "unit")]
from _common import write_result  # noqa: E402


def main() -> None:
    import test_reference_equivalence as ref
    import tiny_models
    import torch
    from conftest import spec_for
    from image_files import image_files
    from PIL import Image

    from vlserve.models import load_dual_encoder

    root = Path(tempfile.mkdtemp(prefix="parity-"))
    dirs = {"open_clip_clip": tiny_models.save_open_clip(root / "oc_clip", tiny_models.OPEN_CLIP_TINY),
            "open_clip_siglip": tiny_models.save_open_clip(root / "oc_siglip", tiny_models.OPEN_CLIP_SIGLIP_TINY),
            "hf_clip": tiny_models.save_hf_clip(root / "hf_clip"),
            "hf_siglip": tiny_models.save_hf_siglip(root / "hf_siglip"),
            "hf_align": tiny_models.save_hf_align(root / "hf_align")}
    files = image_files()
    out: dict[str, Any] = {}
    for key, path in dirs.items():
        model = load_dual_encoder(spec_for(key, path))
        encode = ref._reference_image_encoder(key, path)
        got = model.encode_images(list(files.values()))
        row: dict[str, Any] = {}
        with torch.no_grad():
            for g, (kind, data) in zip(got, files.items(), strict=True):
                given, why = ref._as_vlserve_defines(key, kind, Image.open(io.BytesIO(data)))
                entry: dict[str, Any] = {"max_abs_delta": float(np.abs(g - encode(given).numpy()[0]).max())}
                if why:
                    entry["departure"] = why
                    try:
                        entry["plain_reference_max_abs_delta"] = float(
                            np.abs(g - encode(Image.open(io.BytesIO(data))).numpy()[0]).max())
                    except (RuntimeError, ValueError) as e:
                        entry["plain_reference_max_abs_delta"] = f"reference fails: {type(e).__name__}"
                row[kind] = entry
        pils = [Image.fromarray(np.full((40, 50, 3), 90, np.uint8))]
        if key.startswith("open_clip"):
            _, txt, _ = ref._open_clip_reference(path, pils)
        else:
            _, txt, _ = ref._hf_reference(path, pils, ref.FAMILY[key])
        row["texts"] = {"texts": [*ref.TEXTS[:4], "'the cat ' * 60"],
                        "max_abs_delta": float(np.abs(model.encode_texts(ref.TEXTS) - txt).max())}
        out[key] = row
        print(key, {k: v["max_abs_delta"] for k, v in row.items()}, flush=True)
    worst = max(v["max_abs_delta"] for row in out.values() for v in row.values())
    write_result("parity", {"families": out, "worst_max_abs_delta": worst, "target": "<= 1e-5 (fp32)",
                            "met": worst <= 1e-5})


if __name__ == "__main__":
    main()
