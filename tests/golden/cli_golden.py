"""Saved JSON outputs of a few ``vlserve`` commands, compared by tests/integration/test_cli_golden.py.

The commands run on the embedded toy model and on inputs built here (seeded pixels, a descriptor
file), so the outputs depend only on the code and the toy weights. After retraining the toy model
(or on purpose changing an output), regenerate them with::

    .venv/bin/python tests/golden/cli_golden.py --record

Paths are written as ``<WORK>`` (the temporary input folder) and ``<ROOT>`` (the source tree);
``seconds`` fields are dropped; numbers are compared with a tolerance.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

GOLDEN_DIR = Path(__file__).parent / "cli"
ROOT = Path(__file__).resolve().parents[2]
DROPPED_KEYS = {"seconds"}


def prepare_inputs(work: Path) -> None:
    """Seeded pictures (a red disc, a blue block on noise) and a descriptor file."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:64, :64]
    disc = rng.integers(90, 140, size=(64, 64, 3), dtype=np.uint8)
    disc[(yy - 32) ** 2 + (xx - 30) ** 2 < 15 ** 2] = (220, 30, 30)
    Image.fromarray(disc).save(work / "red_disc.png")
    block = rng.integers(90, 140, size=(64, 64, 3), dtype=np.uint8)
    block[16:48, 12:44] = (30, 40, 220)
    Image.fromarray(block).save(work / "blue_block.png")
    (work / "descriptors.json").write_text(json.dumps({
        "circle": ["round", "a curved outline"], "square": ["four equal sides", "right angles"],
        "triangle": ["three corners", "a pointed top"]}))


def commands(work: Path) -> dict[str, list[str]]:
    disc, block = str(work / "red_disc.png"), str(work / "blue_block.png")
    return {
        "models": ["models"],
        "info": ["info"],
        "embed_text": ["embed", "--text", "a red circle", "--text", "a small blue square", "--dimensions", "16"],
        "embed_image": ["embed", "--image", disc, "--text", "a red circle"],
        "classify_labels": ["classify", disc, block, "--labels", "red,green,blue", "--top-k", "2"],
        "classify_descriptors": ["classify", disc, "--descriptors", str(work / "descriptors.json")],
        "classify_dims": ["classify", block, "--labels", "circle,square,triangle", "-t", "plain", "-d", "32",
                          "--abstain-threshold", "0.9"],
        "eval_zeroshot": ["eval", "zeroshot", "--data", "toyworld:test/colour", "--n", "50", "-d", "16,128"],
        "repo_build": ["repo", "build", "--model", "toy", "--out", str(work / "repo"), "--prefix", "toy_"],
        "index_list": ["index", "list", "--index-dir", str(work / "no-indexes")],
    }


def run_command(args: list[str], work: Path) -> Any:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLSERVE_CACHE_DIR": str(work / "cache")}
    env.pop("VLSERVE_MODEL", None)
    env.pop("VLSERVE_DETECTOR_MODEL", None)
    r = subprocess.run([sys.executable, "-m", "vlserve", *args], capture_output=True, text=True, env=env,
                       timeout=600, cwd=work)
    if r.returncode != 0:
        raise RuntimeError(f"vlserve {' '.join(args)} exited {r.returncode}: {r.stderr[-2000:]}")
    return normalise(json.loads(r.stdout), work)


def normalise(obj: Any, work: Path) -> Any:
    if isinstance(obj, dict):
        return {k: normalise(v, work) for k, v in obj.items() if k not in DROPPED_KEYS}
    if isinstance(obj, list):
        return [normalise(v, work) for v in obj]
    if isinstance(obj, str):
        return obj.replace(str(work), "<WORK>").replace(str(ROOT), "<ROOT>")
    return obj


def differences(expected: Any, got: Any, where: str = "", tol: float = 2e-4) -> list[str]:
    """Where ``got`` differs from ``expected``: keys, lengths, strings exactly; numbers within ``tol``."""
    if isinstance(expected, dict) and isinstance(got, dict):
        out = [f"{where}: keys {sorted(set(expected) ^ set(got))} differ"] if set(expected) != set(got) else []
        for k in expected.keys() & got.keys():
            out += differences(expected[k], got[k], f"{where}.{k}", tol)
        return out
    if isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            return [f"{where}: length {len(got)}, expected {len(expected)}"]
        return [d for i, (e, g) in enumerate(zip(expected, got, strict=True))
                for d in differences(e, g, f"{where}[{i}]", tol)]
    numbers = (int, float)
    if isinstance(expected, numbers) and isinstance(got, numbers) and not isinstance(expected, bool):
        return [] if abs(expected - got) <= tol * max(1.0, abs(expected)) else [f"{where}: {got} != {expected}"]
    return [] if expected == got else [f"{where}: {got!r} != {expected!r}"]


def record() -> None:
    GOLDEN_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp).resolve()
        prepare_inputs(work)
        for name, args in commands(work).items():
            out = run_command(args, work)
            (GOLDEN_DIR / f"{name}.json").write_text(json.dumps({"args": normalise(args, work),
                                                                 "output": out}, indent=1) + "\n")
            print(f"recorded {name}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit(__doc__)
    record()
