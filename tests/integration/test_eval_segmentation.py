"""``vlserve eval segmentation`` on the embedded toy model: the report's shape, a background threshold
chosen from the grid on validation scenes, mIoU from torchmetrics in [0, 1], and refusals by name
with the error table's exit code."""

from __future__ import annotations

import json

import pytest
from cli_in_process import vlserve

from vlserve.errors import ERROR_TABLE, InvalidInput
from vlserve.evaluation.segmentation import THRESHOLDS

pytestmark = pytest.mark.integration


def test_toy_segmentation_report(tmp_path, capsys):
    out = tmp_path / "seg.json"
    code, _, err = vlserve(["eval", "segmentation", "--model", "toy", "--methods", "vanilla,maskclip", "--n", "12",
                            "--upscale", "2", "--out", str(out)], capsys)
    assert code == 0, err
    report = json.loads(out.read_text())
    assert report["git_commit"] and report["task"] == "segmentation" and report["n_scenes"] == 12
    assert report["classes"][0] == "background" and len(report["classes"]) == 7
    for method in ("vanilla", "maskclip"):
        m = report["methods"][method]
        assert 0.0 <= m["mIoU"] <= 1.0 and m["background_threshold"] in THRESHOLDS
        assert m["mIoU"] == pytest.approx(sum(m["IoU_per_class"].values()) / 7, abs=1e-3)


@pytest.mark.parametrize(("args", "message"), [
    (["--methods", "maskclip,nope"], "unknown nope"),
    (["--data", "toyworld:val"], "toyworld:test or toyworld:heldout"),
    (["--upscale", "9"], "--upscale must be in 1..4"),
])
def test_bad_options_are_refused_by_name(args, message, capsys):
    code, _, err = vlserve(["eval", "segmentation", "--model", "toy", *args], capsys)
    assert code == ERROR_TABLE[InvalidInput].exit_code and message in err, err
