"""``vlserve segment``: the mask PNG, overlay and heatmaps written for a toy scene (the embedded DenseCLIP
head finds the star), and every refused input as one line on stderr with its exit code."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from cli_in_process import vlserve
from PIL import Image

from vlserve.dense.service import TOY_HEAD_DIR
from vlserve.errors import ERROR_TABLE, InvalidInput, Unsupported
from vlserve.toyworld.dataset import composed_scene
from vlserve.toyworld.scene import SHAPES

pytestmark = pytest.mark.integration
INVALID, UNSUPPORTED = (ERROR_TABLE[c].exit_code for c in (InvalidInput, Unsupported))


@pytest.fixture
def scene_file(tmp_path, monkeypatch):
    monkeypatch.setenv("VLSERVE_CACHE_DIR", str(tmp_path / "cache"))
    scene = composed_scene([("star", "red"), ("circle", "blue")], index=4, image_size=160)
    path = tmp_path / "scene.png"
    Image.fromarray(scene.image).save(path)
    return scene, path


def test_writes_mask_overlay_and_heatmaps(scene_file, tmp_path, capsys):
    scene, path = scene_file
    code, out, err = vlserve(["segment", str(path), "--labels", "star,circle", "--out", str(tmp_path / "seg")],
                             capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["method"] == "denseclip" and report["map_size"] == [160, 160]
    for name in ("mask.png", "overlay.png", "heatmap_0.png", "heatmap_1.png", "result.json"):
        assert (tmp_path / "seg" / name).is_file()
    mask = np.asarray(Image.open(tmp_path / "seg" / "mask.png"))
    truth = scene.semantic_mask() == 1 + SHAPES.index("star")
    star = mask == 1
    assert (truth & star).sum() / (truth | star).sum() >= 0.6
    assert Image.open(tmp_path / "seg" / "overlay.png").size[1] > 160  # the legend below the image


def test_refusals_name_the_problem_with_their_exit_codes(scene_file, tmp_path, capsys):
    _, path = scene_file
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not an image")
    other = tmp_path / "other_head"
    shutil.copytree(TOY_HEAD_DIR, other)
    meta = json.loads((other / "head.json").read_text())
    meta["encoder_fingerprint"] = "0123456789abcdef"
    (other / "head.json").write_text(json.dumps(meta))
    out = str(tmp_path / "seg")
    for args, code, message in [
        (["--labels", " , "], INVALID, "no labels"),
        (["--labels", ",".join(f"l{i}" for i in range(10_000))], INVALID, "at most 256"),
        (["--labels", "star", "--method", "nope"], INVALID, "unknown dense method 'nope'"),
        (["--labels", "star", "--method", "sclip"], UNSUPPORTED, "ResNet tower"),
        (["--labels", "star", "--method", "denseclip", "--head", "none"], UNSUPPORTED, "no DenseCLIP head"),
        (["--labels", "star", "--head", str(other)], INVALID, "trained on encoder 'toy'"),
    ]:
        got, _, err = vlserve(["segment", str(path), "--out", out, *args], capsys)
        assert (got, err.count("\n")) == (code, 1) and message in err, (args, err)
    got, _, err = vlserve(["segment", str(corrupt), "--labels", "star", "--out", out], capsys)
    assert got == INVALID and "corrupt.png" in err, err
