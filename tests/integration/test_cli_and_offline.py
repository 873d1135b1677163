"""The CLI end to end (subprocesses), and honest offline behaviour for hub specs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import spec_for
from PIL import Image

from vlserve.errors import ModelUnavailable, UnknownModelSpec, VLServeError, mapping_of

pytestmark = pytest.mark.integration


def exit_code(error: type[VLServeError]) -> int:
    return mapping_of(error).exit_code
VLSERVE = [sys.executable, "-m", "vlserve"]


def run(args, env_extra=None, timeout=120):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run([*VLSERVE, *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_embed_prints_json_with_fingerprint(tiny_dirs, tmp_path):
    img = tmp_path / "a.png"
    Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(img)
    spec = spec_for("open_clip_clip", tiny_dirs["open_clip_clip"])
    r = run(["embed", "--model", spec, "--image", str(img), "--text", "a red star", "--dimensions", "8"])
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["dimensions"] == 8 and out["full_dimensions"] == 32 and len(out["fingerprint"]) == 16
    for item in out["images"] + out["texts"]:
        assert len(item["embedding"]) == 8
        assert np.linalg.norm(item["embedding"]) == pytest.approx(1, abs=1e-4)


def test_embed_bad_inputs_exit_nonzero_with_a_message(tiny_dirs, tmp_path):
    spec = spec_for("open_clip_clip", tiny_dirs["open_clip_clip"])
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    r = run(["embed", "--model", spec, "--image", str(bad)])
    assert r.returncode == 2 and f"{bad}: not a decodable image" in r.stderr and "Traceback" not in r.stderr
    r = run(["embed", "--model", "nope:x", "--text", "a"])
    assert r.returncode == exit_code(UnknownModelSpec) and "known schemes" in r.stderr
    r = run(["embed", "--model", spec, "--text", "a", "--dimensions", "999"])
    assert r.returncode == 2 and "dimensions must be an integer in 1..32" in r.stderr
    r = run(["embed", "--model", spec])
    assert r.returncode == 2 and "nothing to embed" in r.stderr


def test_models_lists_families_and_forms():
    r = run(["models"])
    out = json.loads(r.stdout)
    assert set(out["families"]) == {"clip", "siglip", "align"} and "toy" in out["aliases"]


@pytest.mark.parametrize("spec", ["hf:openai/clip-vit-base-patch32", "open_clip:ViT-B-32/laion2b_s34b_b79k"])
@pytest.mark.parametrize("offline_flag", ["1", ""])
def test_hub_spec_without_cache_fails_fast_and_says_how(spec, offline_flag, tmp_path):
    # the subprocess timeout is a hang guard only (speed is not asserted in tests): the hub client's own
    # retry loop would log "Retrying" before giving up, and vlserve must not enter it
    r = run(["embed", "--model", spec, "--text", "a"], {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": offline_flag,
                                                        "HF_ENDPOINT": "http://127.0.0.1:9"}, timeout=300)
    assert r.returncode == exit_code(ModelUnavailable), r.stderr
    assert f"cannot load weights for model spec {spec!r}" in r.stderr
    assert "local-dir" in r.stderr and "HF_HOME" in r.stderr and "Traceback" not in r.stderr
    assert "retry" not in r.stderr.lower()


def test_warm_hub_cache_loads_offline(tiny_dirs, tmp_path):
    """A hub id resolves through huggingface_hub's own cache layout when the hub is unreachable."""
    import shutil

    repo = tmp_path / "hf" / "hub" / "models--vlserve-test--tiny-clip"
    commit = "0" * 40
    shutil.copytree(tiny_dirs["hf_clip"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    r = run(["info", "--model", "hf:vlserve-test/tiny-clip"], {"HF_HOME": str(tmp_path / "hf")})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["family"] == "clip"
