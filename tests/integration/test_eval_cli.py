"""`vlserve toyworld export`, `vlserve eval ...` and `vlserve classify` end to end on the toy model."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from vlserve.errors import InvalidInput, NotFound, mapping_of

pytestmark = pytest.mark.integration


def run(*args: str, cache=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **({"VLSERVE_CACHE_DIR": str(cache)} if cache else {})}
    return subprocess.run([sys.executable, "-m", "vlserve", *args], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    out = tmp_path_factory.mktemp("gallery")
    r = run("toyworld", "export", "--split", "test", "--n", "40", "--n-novel", "48", "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out


def test_export_layout(gallery):
    rows = list(csv.DictReader((gallery / "captions.csv").open()))
    assert len(rows) == 120 and all((gallery / r["image"]).is_file() for r in rows)
    labels = json.loads((gallery / "labels.json").read_text())
    for objects in labels["images"].values():
        side = objects["size_px"]
        assert 64 <= side <= 224
        for o in objects["objects"]:
            x0, y0, x1, y1 = o["box_xyxy"]
            assert 0 <= x0 < x1 <= side and 0 <= y0 < y1 <= side
    assert json.loads((gallery / "novel" / "descriptors.json").read_text())["blicket"] == ["red color", "a star"]
    assert len(list((gallery / "masks").glob("*_semantic.png"))) == 40


def test_eval_zeroshot_matryoshka_curve():
    r = run("eval", "zeroshot", "--model", "toy", "--data", "toyworld:test/colour", "--n", "60", "--dimensions", "all")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert set(report["by_dim"]) == {"8", "16", "32", "64", "128"} and report["by_dim"]["128"]["top1"] >= 0.9


def test_eval_zeroshot_with_descriptors_on_exported_csv(gallery):
    r = run("eval", "zeroshot", "--model", "toy", "--data", str(gallery / "novel" / "labels.csv"),
            "--descriptors", str(gallery / "novel" / "descriptors.json"))
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["method"] == "descriptors" and report["by_dim"]["128"]["top1"] >= 0.75


def test_eval_retrieval_on_exported_captions(gallery):
    r = run("eval", "retrieval", "--model", "toy", "--data", str(gallery / "captions.csv"), "--dimensions", "32,128")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["images"] == 40 and report["captions"] == 120
    assert 0 < report["by_dim"]["128"]["i2t_recall@5"] <= 1


def test_classify_cli(gallery, tmp_path):
    img = sorted((gallery / "novel").glob("*.jpg"))[0]
    r = run("classify", str(img), "--model", "toy", "--labels", "circle,square,triangle,star,cross,diamond",
            "--top-k", "3", cache=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["rule"].startswith("softmax") and len(out["results"][0]["labels"]) == 3
    r = run("classify", str(img), "--model", "toy", "--descriptors", str(gallery / "novel" / "descriptors.json"),
            cache=tmp_path)
    top = json.loads(r.stdout)["results"][0]["labels"][0]
    assert top["label"] == "blicket"  # image 0 of the novel set is class 0
    assert [e["descriptor"] for e in top["explanation"]]
    assert "mean of descriptor cosines" in json.loads(r.stdout)["rule"]


def test_embed_runs_on_the_embedded_default_with_no_model_given():
    r = run("embed", "--text", "a red star")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["model"] == "toy" and out["full_dimensions"] == 128 and len(out["texts"][0]["embedding"]) == 128


@pytest.mark.parametrize(("args", "message", "error"), [
    (("eval", "zeroshot", "--model", "toy", "--data", "/no/such/dir"), "not a folder, a CSV", InvalidInput),
    (("eval", "zeroshot", "--model", "toy", "--data", "toyworld:test/weather"), "unknown toy-world task",
     InvalidInput),
    (("eval", "zeroshot", "--model", "toy", "--data", "toyworld:test/shape", "--dimensions", "0,300"),
     "--dimensions", InvalidInput),
    (("classify", "x.jpg", "--model", "toy", "--labels", "a,b"), "image file not found", NotFound),
    (("toyworld", "export", "--split", "nope", "--out", "/tmp/x"), "unknown split", InvalidInput),
])
def test_bad_cli_input(args, message, error):
    r = run(*args)
    assert r.returncode == mapping_of(error).exit_code and message in r.stderr and "Traceback" not in r.stderr


def test_duplicate_labels_are_refused_by_name(gallery):
    """A real image, so the command gets past reading it and reaches the label check."""
    img = sorted((gallery / "novel").glob("*.jpg"))[0]
    r = run("classify", str(img), "--model", "toy", "--labels", "star,circle,star")
    assert r.returncode == mapping_of(InvalidInput).exit_code and "Traceback" not in r.stderr
    assert "duplicate labels: 'star'" in r.stderr and "image file not found" not in r.stderr
