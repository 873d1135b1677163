"""`vlserve eval detection` end to end: COCO AP from pycocotools on toy scenes and on a COCO file.

A tiny random OWL-ViT scores near zero; what is checked is the report (every query kind, the style
breakdown, provenance) and that the COCO-file path scores the same images as the toy path would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.tiny_models import save_hf_owl
from vlserve.errors import InvalidInput, mapping_of

pytestmark = pytest.mark.integration


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "vlserve", "eval", "detection", *args], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def owl(tmp_path_factory) -> Path:
    return save_hf_owl(tmp_path_factory.mktemp("owl") / "owlvit")


def test_toy_report_has_every_query_kind_and_style(owl: Path, tmp_path: Path) -> None:
    out = tmp_path / "det.json"
    r = run("--model", f"hf:{owl}", "--data", "toyworld:test", "--n", "6", "--threshold", "0", "--out", str(out))
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    assert report["git_commit"] and "eval detection --model" in report["command"]
    assert report["n_scenes"] == 6 and report["n_objects"] >= 12
    for key in ("text_shape", "text_colour_shape", "image_shape"):
        assert 0.0 <= report[key]["AP50"] <= 1.0
        assert report[key]["AP50_by_style"] and all(v["n_objects"] > 0 for v in report[key]["AP50_by_style"].values())
    assert set(report["text_shape"]["AP50_per_category"]) == {"circle", "square", "triangle", "star", "cross",
                                                               "diamond"}


def test_coco_file(owl: Path, tmp_path: Path) -> None:
    from vlserve.toyworld.dataset import detection_scene

    images, anns = [], []
    for i in range(3):
        scene = detection_scene("test", i, min_objects=2)
        Image.fromarray(scene.image).save(tmp_path / f"{i}.png")
        h, w = scene.image.shape[:2]
        images.append({"id": i + 1, "file_name": f"{i}.png", "height": h, "width": w})
        for o in scene.objects:
            x0, y0, x1, y1 = o.box
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": ["circle", "star"].index(o.shape) + 1
                         if o.shape in ("circle", "star") else 3, "bbox": [x0, y0, x1 - x0, y1 - y0],
                         "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
    coco = tmp_path / "instances.json"
    coco.write_text(json.dumps({"images": images, "annotations": anns, "categories": [
        {"id": 1, "name": "circle"}, {"id": 2, "name": "star"}, {"id": 3, "name": "other shape"}]}))
    r = run("--model", f"hf:{owl}", "--data", str(coco), "--threshold", "0")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["n_images"] == 3 and set(report["text"]["AP50_per_category"]) == {"circle", "star", "other shape"}

    (tmp_path / "1.png").unlink()
    r = run("--model", f"hf:{owl}", "--data", str(coco))
    assert r.returncode == mapping_of(InvalidInput).exit_code and "not found" in r.stderr


def test_bad_data_is_refused_before_loading(owl: Path) -> None:
    for data in ("toyworld:train", "no/such/file.json"):
        r = run("--model", f"hf:{owl}", "--data", data)
        assert r.returncode == mapping_of(InvalidInput).exit_code and "--data" in r.stderr
