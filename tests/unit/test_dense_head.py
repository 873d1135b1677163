"""The DenseCLIP head's wiring (on the embedded toy encoder, frozen): the pyramid reads the tower's own
outputs, an untrained head's label embeddings are the zero-shot template's, the head follows the
label set it is given, files round-trip and are refused on another encoder; and a head trains from a
user's folder of image + mask PNGs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vlserve.dense.head import DenseCLIPHead, HeadConfig, load_head
from vlserve.dense.towers import dense_embeddings, pyramid, pyramid_channels
from vlserve.dense.train import DenseTrainConfig, pick_labels, remap, train_head
from vlserve.errors import InvalidInput, Unsupported
from vlserve.models import load_dual_encoder


@pytest.fixture(scope="module")
def toy():
    return load_dual_encoder("toy")


def _head(toy, seed: int = 0) -> DenseCLIPHead:
    torch.manual_seed(seed)
    clip, tok = toy.model, toy._tokenizer
    cfg = HeadConfig(level_channels=pyramid_channels(clip), embed_dim=int(clip.text_projection.shape[1]))
    ctx = clip.token_embedding(tok([cfg.context_init]))[0, 1:5]
    return DenseCLIPHead(cfg, ctx, torch.zeros(cfg.embed_dim)).eval()


@torch.no_grad()
def test_pyramid_reads_the_towers_own_global_and_vanilla_dense_embeddings(toy) -> None:
    pixels = torch.randn(2, 3, 128, 128)
    pyr = pyramid(toy.model, pixels)
    assert [lv.shape[-1] for lv in pyr.levels] == [32, 16, 8, 4]
    assert torch.allclose(pyr.dense, dense_embeddings(toy.model, pixels, "vanilla"), atol=1e-5)
    at_trained_size = torch.randn(2, 3, 96, 96)
    assert torch.allclose(pyramid(toy.model, at_trained_size).global_, toy.model.encode_image(at_trained_size),
                          atol=1e-5)


@torch.no_grad()
def test_untrained_head_labels_are_the_zero_shot_templates_embeddings(toy) -> None:
    head = _head(toy)
    labels = ["star", "red circle", "hand-drawn blue triangle"]
    got = head.encode_labels(toy.model, toy._tokenizer, labels)
    want = toy.model.encode_text(toy._tokenizer([f"a photo of a {label}" for label in labels]))
    assert torch.allclose(got, want, atol=1e-5)


@torch.no_grad()
def test_head_answers_any_label_set_with_background_first(toy) -> None:
    head = _head(toy)
    pyr = pyramid(toy.model, torch.randn(2, 3, 128, 128))
    for n in (1, 2, 7):
        text = head.encode_labels(toy.model, toy._tokenizer, [f"label {i}" for i in range(n)])
        logits, scores = head(pyr.levels, pyr.dense, pyr.global_, text)
        assert logits.shape == (2, 1 + n, 32, 32) and scores.shape == (2, 1 + n, 4, 4)
    # a label's logits do not depend on the other labels asked for (open vocabulary, shared weights),
    # up to the context decoder's self-attention among labels: check with gamma = 0
    head.gamma.zero_()
    a = head(pyr.levels, pyr.dense, pyr.global_, head.encode_labels(toy.model, toy._tokenizer, ["star", "circle"]))[0]
    b = head(pyr.levels, pyr.dense, pyr.global_, head.encode_labels(toy.model, toy._tokenizer, ["star"]))[0]
    assert torch.allclose(a[:, :2], b, atol=1e-5)


def test_head_files_round_trip_and_are_refused_on_another_encoder(toy, tmp_path) -> None:
    head = _head(toy, seed=3)
    head.save(tmp_path / "h", "toy", toy.fingerprint, {"train": {}})
    loaded, meta = load_head(tmp_path / "h", toy.fingerprint)
    assert meta["encoder_spec"] == "toy"
    for (name, a), (_, b) in zip(head.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.allclose(a.half().float(), b), name
    with pytest.raises(InvalidInput, match="trained on encoder 'toy'") as err:
        load_head(tmp_path / "h", "0123456789abcdef")
    assert err.value.field == "head"


def test_pyramid_refuses_towers_it_does_not_read() -> None:
    from open_clip.model import CLIP
    from tiny_models import OPEN_CLIP_TINY

    with pytest.raises(Unsupported, match="ResNet"):
        pyramid_channels(CLIP(**OPEN_CLIP_TINY))


def test_label_subsets_make_left_out_labels_background() -> None:
    rng = np.random.default_rng(0)
    masks = np.array([[0, 1, 2, 3, 255]], np.uint8)
    assert remap(masks, np.array([0, 2]), 3).tolist() == [[0, 1, 0, 2, 255]]
    sizes = {len(pick_labels(6, True, rng)) for _ in range(200)}
    assert sizes == {2, 3, 4, 5} and len(pick_labels(6, False, rng)) == 6


def test_trains_from_a_folder_of_masks_and_refuses_a_bad_folder(toy, tmp_path) -> None:
    data = tmp_path / "masks"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    (data / "labels.txt").write_text("left\nright\n")
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(data / "images" / f"{i}.png")
        mask = np.zeros((48, 64), np.uint8)
        mask[:, :20], mask[:, 40:] = 1, 2
        Image.fromarray(mask).save(data / "masks" / f"{i}.png")
    cfg = DenseTrainConfig(data=str(data), steps=3, batch_size=4, input_size=64, threads=1)
    summary = train_head(toy, tmp_path / "head", cfg)
    assert summary["steps_done"] == 3
    _, meta = load_head(tmp_path / "head", toy.fingerprint)
    assert meta["config"]["input_size"] == 64 and meta["train"]["config"]["data"] == str(data)
    (data / "labels.txt").unlink()
    with pytest.raises(InvalidInput, match=r"labels\.txt"):
        train_head(toy, tmp_path / "head2", cfg)
