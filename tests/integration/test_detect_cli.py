"""``vlserve detect``: JSON out, and every refused input as one line on stderr with the exit code of
its row in the error table (docs/errors.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from cli_in_process import vlserve
from PIL import Image

from vlserve.errors import ERROR_TABLE, InvalidInput, NotFound, Unsupported

pytestmark = pytest.mark.integration
INVALID, NOT_FOUND, UNSUPPORTED = (ERROR_TABLE[c].exit_code for c in (InvalidInput, NotFound, Unsupported))


@pytest.fixture
def files(tmp_path, monkeypatch, detection_images):
    monkeypatch.setenv("VLSERVE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("VLSERVE_DETECTOR_MODEL", raising=False)
    paths = {}
    for i, arr in enumerate(detection_images):
        paths[f"img{i}"] = tmp_path / f"img{i}.png"
        Image.fromarray(arr).save(paths[f"img{i}"])
    paths["big"] = tmp_path / "big.png"
    Image.fromarray(np.zeros((80, 100, 3), np.uint8)).save(paths["big"])
    paths["corrupt"] = tmp_path / "corrupt.jpg"
    paths["corrupt"].write_bytes(b"\xff\xd8\xff definitely not a jpeg")
    return {k: str(v) for k, v in paths.items()}


def test_detect_prints_boxes_as_json(tiny_owl, files, tmp_path, capsys):
    model = f"hf:{tiny_owl['owlv2']}"
    out = tmp_path / "found.json"
    code, stdout, err = vlserve(["detect", files["img0"], files["img1"], "--model", model, "-q", "a red star",
                                 "-q", "a blue circle", "--threshold", "0", "--nms", "0.5", "--top-k", "7",
                                 "--out", str(out)], capsys)
    assert code == 0, err
    report = json.loads(stdout)
    assert report == json.loads(out.read_text())
    assert (report["family"], report["query_kind"], report["queries"]) == ("owlv2", "text",
                                                                           ["a red star", "a blue circle"])
    first = report["results"][0]
    assert (first["image"], first["height"], first["width"]) == (files["img0"], 40, 70)
    assert len(first["detections"]) == 7
    assert {d["label"] for d in first["detections"]} <= {"a red star", "a blue circle"}
    scores = [d["score"] for d in first["detections"]]
    assert scores == sorted(scores, reverse=True)
    code, stdout, err = vlserve(["detect", files["img2"], "--model", model, "--query-image", files["img0"],
                                 "--query-box", "5,3,40,30", "--threshold", "0", "-k", "3"], capsys)
    assert code == 0, err
    found = json.loads(stdout)["results"][0]["detections"]
    assert len(found) == 3 and all(0 <= d["relative_score"] <= 1 and d["label"] == "image query 0" for d in found)


@pytest.mark.parametrize(("name", "args", "code", "message"), [
    ("no queries", [], INVALID, "no queries"),
    ("both kinds", ["-q", "a star", "--query-image", "{img1}"], INVALID, "not both"),
    ("empty query", ["-q", "a star", "-q", ""], INVALID, "queries 1: empty query"),
    ("too many queries", [a for i in range(65) for a in ("-q", f"thing {i}")], INVALID, "exceed the limit of 64"),
    ("corrupt query image", ["--query-image", "{corrupt}"], INVALID, "{corrupt}: not a decodable image"),
    ("corrupt image", ["-q", "a star", "--", "{corrupt}"], INVALID, "{corrupt}: not a decodable image"),
    ("box outside", ["--query-image", "{img1}", "--query-box", "0,0,60,20"], INVALID,
     "{img1}: query box (0, 0, 60, 20) is not inside the 52x90 query image"),
    ("malformed box", ["--query-image", "{img1}", "--query-box", "1,2,3"], INVALID, "x0,y0,x1,y1"),
    ("box without a query image", ["-q", "a star", "--query-box", "1,2,3,4"], INVALID, "applies to a --query-image"),
    ("threshold", ["-q", "a star", "--threshold", "1.5"], INVALID, r"threshold must be a number in [0, 1]"),
    ("nms", ["-q", "a star", "--nms", "-0.5"], INVALID, r"nms_iou must be a number in [0, 1]"),
    ("top-k", ["-q", "a star", "--top-k", "0"], INVALID, "top_k must be an integer in 1..1000"),
    ("pixel limit", ["-q", "a star", "--", "{big}"], INVALID, "{big}: declared size 100x80 exceeds the 5000-pixel"),
    ("missing file", ["-q", "a star", "--", "/no/such/image.png"], NOT_FOUND, "image file not found"),
    ("not a detector", ["-q", "a star", "--model", "toy"], UNSUPPORTED, "not a detector"),
    ("no detector configured", ["-q", "a star", "--model", ""], INVALID, "no detector model"),
])
def test_refused_input_exits_with_its_code_and_one_line(name, args, code, message, tiny_owl, files, capsys,
                                                        monkeypatch):
    monkeypatch.setenv("VLSERVE_MAX_IMAGE_PIXELS", "5000")
    args = [a.format(**files) for a in args]
    model = [] if "--model" in args else ["--model", f"hf:{tiny_owl['owlvit']}"]
    images = [] if "--" in args else [files["img0"]]
    got, stdout, err = vlserve(["detect", *images, *model, *args], capsys)
    assert got == code, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]  # (transformers may show a
    assert len(errors) == 1 and errors[0] == err.splitlines()[-1]             # progress bar as it loads)
    assert message.format(**files) in errors[0]
    assert stdout == ""


def test_exit_code_of_the_real_process(tiny_owl, files):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "vlserve", "detect", files["img0"], "--model",
                        f"hf:{tiny_owl['owlvit']}", "-q", "a star", "--threshold", "2"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == INVALID and r.stderr == "error: threshold must be a number in [0, 1], got 2.0\n"


def test_repo_build_writes_the_detector_for_a_detector_spec(tiny_owl, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("VLSERVE_DETECTOR_MODEL", raising=False)
    code, stdout, err = vlserve(["repo", "build", "--model", "toy", "--out", str(tmp_path / "a")], capsys)
    assert code == 0, err
    assert "detector" not in json.loads(stdout)["models"] and not (tmp_path / "a" / "detector").exists()
    monkeypatch.setenv("VLSERVE_DETECTOR_MODEL", f"hf:{tiny_owl['owlvit']}")
    code, stdout, err = vlserve(["repo", "build", "--model", "toy", "--out", str(tmp_path / "b")], capsys)
    assert code == 0, err
    report = json.loads(stdout)
    assert "detector" in report["models"] and report["detector_spec"] == f"hf:{tiny_owl['owlvit']}"
    assert f'string_value: "hf:{tiny_owl["owlvit"]}"' in (tmp_path / "b" / "detector" / "config.pbtxt").read_text()
