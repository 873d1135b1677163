"""The toy detector's training pieces: towers that are CLIP's, the matching loss, and a two-step run
whose outputs load through transformers' own classes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vlserve.toyworld.detector_train import (
    DetectorTrainConfig,
    detection_loss,
    patch_labels,
    train_detector,
    turn_boxes,
    turn_images,
)
from vlserve.toyworld.owl import build_detector, clip_from_owl


@torch.no_grad()
def test_owl_towers_are_a_clip_model() -> None:
    owl = build_detector(seed=3).owlvit.eval()
    clip = clip_from_owl(owl)
    pixels = torch.randn(2, 3, 96, 96)
    ids = torch.tensor([[49406, 320, 1929, 49407, 0, 0], [49406, 320, 1125, 3482, 2368, 49407]])
    mask = (ids != 0).long()
    for a, b in ((owl.get_image_features(pixel_values=pixels), clip.get_image_features(pixel_values=pixels)),
                 (owl.get_text_features(input_ids=ids, attention_mask=mask),
                  clip.get_text_features(input_ids=ids, attention_mask=mask))):
        assert torch.allclose(a.pooler_output, b.pooler_output, atol=1e-5)


def _logits(p: int, q: int, on: dict[int, list[int]]) -> torch.Tensor:
    x = torch.full((1, p, q), -6.0)
    for patch, queries in on.items():
        x[0, patch, queries] = 6.0
    return x


def test_matching_loss_rewards_the_right_patch_box_and_queries() -> None:
    target = [{"boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3]]), "queries": torch.tensor([[1, 4]])}]
    boxes = torch.tensor([[[0.1, 0.1, 0.1, 0.1], [0.3, 0.3, 0.1, 0.1], [0.5, 0.5, 0.2, 0.3], [0.8, 0.8, 0.2, 0.2]]])
    right, parts = detection_loss(_logits(4, 6, {2: [1, 4]}), boxes, target)
    assert parts["l1"] == pytest.approx(0.0, abs=1e-6) and parts["giou"] == pytest.approx(0.0, abs=1e-6)
    wrong_queries, _ = detection_loss(_logits(4, 6, {2: [0, 3]}), boxes, target)
    wrong_patch, _ = detection_loss(_logits(4, 6, {0: [1, 4]}), boxes, target)
    assert float(right) < float(wrong_queries) and float(right) < float(wrong_patch)
    shifted = boxes.clone()
    shifted[0, 2, :2] += 0.1
    worse_box, _ = detection_loss(_logits(4, 6, {2: [1, 4]}), shifted, target)
    assert float(worse_box) > float(right)


@pytest.mark.slow
def test_two_step_training_writes_loadable_transformers_folders(tmp_path: Path) -> None:
    from transformers import CLIPModel, OwlViTForObjectDetection, OwlViTProcessor

    cfg = DetectorTrainConfig(pretrain_steps=2, detect_steps=2, pretrain_batch=8, detect_batch=4, workers=0,
                              warmup=1, eval_every=1, token_labels=1.0, reuse=2, text_from="vlserve/assets/toy",
                              distil=1.0, dense_distil=1.0)
    calls = []
    summary = train_detector(tmp_path / "owl", tmp_path / "vit", cfg, log_path=tmp_path / "log.jsonl",
                             validate=lambda m: calls.append(1) or {"ok": 1.0})
    assert summary["pretrain"]["steps"] == 2 and summary["detect"]["steps"] == 2 and len(calls) == 3
    owl = OwlViTForObjectDetection.from_pretrained(tmp_path / "owl", local_files_only=True)
    proc = OwlViTProcessor.from_pretrained(tmp_path / "owl", local_files_only=True)
    inputs = proc(text=[["a red star", "a circle"]], images=[np.zeros((120, 90, 3), np.uint8)], return_tensors="pt")
    assert inputs["input_ids"].shape == (2, 16) and inputs["pixel_values"].shape == (1, 3, 96, 96)
    with torch.no_grad():
        out = owl.float()(**inputs)
    assert out.logits.shape == (1, 64, 2)
    CLIPModel.from_pretrained(tmp_path / "vit", local_files_only=True)
    assert next(iter(owl.parameters())).dtype in (torch.float16, torch.float32)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert log[-1]["summary"]["git_commit"] and "val" in log[-2]
    assert log[0]["run"]["git_commit"] and log[0]["run"]["command"]  # traceable even if stopped early


@torch.no_grad()
def test_fresh_heads_start_at_the_prior_boxes_with_low_scores() -> None:
    from vlserve.toyworld.detector_train import detect_forward

    model = build_detector(seed=1).eval()
    ids = torch.tensor([[49406, 320, 1929, 49407] + [0] * 12])
    logits, boxes = detect_forward(model, torch.randn(2, 3, 96, 96), ids, (ids != 0).long())
    assert logits.max() < 0 and logits.min() > -10  # sigmoid scores low but not saturated
    assert torch.allclose(boxes[0], boxes[1]) and 0.05 < float(boxes[..., 2:].mean()) < 0.3  # patch-sized priors
    assert len({tuple(b.tolist()) for b in boxes[0, :, :2]}) == boxes.shape[1]  # one centre per patch


def test_towers_round_trip_through_the_clip_folder(tmp_path: Path) -> None:
    from vlserve.toyworld.owl import load_clip_towers, save_clip_towers

    source = build_detector(seed=2)
    save_clip_towers(source.owlvit, tmp_path / "vit", {"steps": 7})
    target = build_detector(seed=5)
    assert load_clip_towers(target, tmp_path / "vit") == {"steps": 7}
    for (name, a), b in zip(source.owlvit.state_dict().items(), target.owlvit.state_dict().values(), strict=True):
        assert torch.allclose(a.half().float(), b), name  # fp16 on disk


@torch.no_grad()
def test_toy_clip_text_tower_copies_exactly_into_the_owl_text_tower() -> None:
    import json as _json

    from open_clip.model import CLIP
    from open_clip.tokenizer import SimpleTokenizer
    from safetensors.torch import load_file

    from vlserve.toyworld.model import TOY_DIR
    from vlserve.toyworld.owl import text_tower_from_open_clip

    toy = CLIP(**_json.loads((TOY_DIR / "open_clip_config.json").read_text())["model_cfg"])
    toy.load_state_dict({k: v.float() for k, v in load_file(str(TOY_DIR / "open_clip_model.safetensors")).items()})
    owl = build_detector(seed=3).eval()
    source = text_tower_from_open_clip(owl, TOY_DIR)
    assert len(source["sha256"]) == 16
    texts = ["a red star", "a photo of a hand-drawn blue triangle outline"]
    want = toy.eval().encode_text(SimpleTokenizer(context_length=32)(texts))
    ids = SimpleTokenizer(context_length=16)(texts)
    got = owl.owlvit.get_text_features(input_ids=ids, attention_mask=(ids != 0).long()).pooler_output
    assert torch.allclose(got, want, atol=1e-5)
    assert float(owl.owlvit.logit_scale) == pytest.approx(float(toy.logit_scale))


def test_one_to_many_matching_gives_each_object_several_patches() -> None:
    target = [{"boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3]]), "queries": torch.tensor([[1, 4]])}]
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.3], [0.52, 0.5, 0.2, 0.3], [0.1, 0.1, 0.1, 0.1], [0.9, 0.9, 0.1, 0.1]]])
    logits = _logits(4, 6, {0: [1, 4], 1: [1, 4]})
    one, parts_one = detection_loss(logits, boxes, target)
    two, parts_two = detection_loss(logits, boxes, target, per_object=2)
    assert parts_one["l1"] == pytest.approx(0.0, abs=1e-6)  # one-to-one takes the exact box
    assert parts_two["l1"] > 0  # the second-best patch is matched too
    assert float(two) < float(one)  # patch 1's high scores are now positives, not penalised negatives


@pytest.mark.parametrize("turns", range(4))
@pytest.mark.parametrize("flip", [False, True])
def test_turned_boxes_follow_the_turned_pixels(turns: int, flip: bool) -> None:
    """Training reuses each drawn batch under the square's 8 symmetries: the boxes must move with the pixels."""
    from vlserve.toyworld.dataset import detection_scene

    scene = next(s for i in range(50) if len((s := detection_scene("train", i)).objects) >= 2)
    side = scene.image.shape[0]
    for obj in scene.objects:
        x0, y0, x1, y1 = obj.box
        box = torch.tensor([[(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0]], dtype=torch.float32) / side
        mask = turn_images(obj.mask[None], turns, flip)[0]
        ys, xs = np.nonzero(mask)
        truth = torch.tensor([(xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2,
                              xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()], dtype=torch.float32) / side
        assert torch.allclose(turn_boxes(box, turns, flip)[0], truth, atol=1e-6)


def test_patch_labels_take_the_class_covering_each_patch() -> None:
    mask = np.zeros((96, 96), np.uint8)
    mask[:12, :12] = 3  # patch (0, 0) wholly class 3
    mask[12:14, 12:24] = 2  # patch (1, 1) only 1/6 covered: background at the default 0.2
    mask[24:36, 24:30] = 1
    mask[24:36, 30:36] = 4  # patch (2, 2) half and half: the larger index of a tie is not guaranteed, one of them
    labels = patch_labels(mask)
    assert labels.shape == (8, 8) and labels[0, 0] == 3 and labels[1, 1] == 0 and labels[2, 2] in (1, 4)
    assert labels.sum() == 3 + labels[2, 2]
    small = np.zeros((48, 48), np.uint8)
    small[:6, :6] = 5  # resized to the input side first: the same patch
    assert patch_labels(small)[0, 0] == 5
