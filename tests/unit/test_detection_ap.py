"""COCO AP through pycocotools: the wrapper's bookkeeping (ids, xywh, crowd-as-ignore) is what can go wrong."""

from __future__ import annotations

import pytest

from vlserve.evaluation.detection_ap import Detection, GroundTruth, coco_ap

SIZES = [(100, 120), (100, 120)]
GTS = [[GroundTruth((10, 10, 40, 50), "star"), GroundTruth((60, 20, 90, 60), "circle")],
       [GroundTruth((5, 5, 30, 30), "star")]]


def test_perfect_detections_score_one() -> None:
    dets = [[Detection(g.box, g.category, 0.9) for g in gts] for gts in GTS]
    r = coco_ap(GTS, dets, ["star", "circle"], SIZES)
    assert r["AP50"] == pytest.approx(1.0) and r["AP"] == pytest.approx(1.0)
    assert r["AP50_per_category"] == {"star": pytest.approx(1.0), "circle": pytest.approx(1.0)}


def test_misplaced_or_mislabelled_boxes_score_zero() -> None:
    shifted = [[Detection((g.box[0] + 25, g.box[1] + 25, g.box[2] + 25, g.box[3] + 25), g.category, 0.9) for g in gts]
               for gts in GTS]
    assert coco_ap(GTS, shifted, ["star", "circle"], SIZES)["AP50"] == pytest.approx(0.0)
    swapped = [[Detection(g.box, "circle" if g.category == "star" else "star", 0.9) for g in gts] for gts in GTS]
    assert coco_ap(GTS, swapped, ["star", "circle"], SIZES)["AP50"] == pytest.approx(0.0)


def test_a_false_positive_ranked_first_lowers_ap() -> None:
    dets = [[Detection(g.box, g.category, 0.5) for g in gts] for gts in GTS]
    dets[1].append(Detection((70, 70, 100, 100), "star", 0.99))
    r = coco_ap(GTS, dets, ["star", "circle"], SIZES)
    assert 0.4 < r["AP50_per_category"]["star"] < 1.0  # type: ignore[index]
    assert r["AP50_per_category"]["circle"] == pytest.approx(1.0)  # type: ignore[index]


def test_ignored_ground_truth_is_neither_hit_nor_miss() -> None:
    gts = [[GroundTruth((10, 10, 40, 50), "star"), GroundTruth((60, 20, 90, 60), "star", ignore=True)]]
    only_first = [[Detection((10, 10, 40, 50), "star", 0.9)]]
    both = [[Detection((10, 10, 40, 50), "star", 0.9), Detection((60, 20, 90, 60), "star", 0.95)]]
    assert coco_ap(gts, only_first, ["star"], [(100, 120)])["AP50"] == pytest.approx(1.0)  # missing it costs nothing
    assert coco_ap(gts, both, ["star"], [(100, 120)])["AP50"] == pytest.approx(1.0)  # finding it is no false positive


def test_no_detections_and_no_ground_truth() -> None:
    assert coco_ap(GTS, [[], []], ["star", "circle"], SIZES)["AP50"] == 0.0
    assert coco_ap([[], []], [[], []], ["star"], SIZES)["AP50"] is None
