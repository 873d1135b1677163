"""Training is seeded and reproducible, writes open_clip's local-dir layout, and the loss is the
Matryoshka soft-target contrastive loss it claims to be."""

from __future__ import annotations

import math

import torch

from vlserve.models import load_dual_encoder
from vlserve.toyworld.train import TrainConfig, build_model, contrastive_loss, train


def test_same_seed_same_weights(tmp_path):
    cfg = TrainConfig(steps=2, batch_size=8, eval_every=10**9, warmup=1)
    train(tmp_path / "a", cfg)
    train(tmp_path / "b", cfg)
    a = (tmp_path / "a" / "open_clip_model.safetensors").read_bytes()
    assert a == (tmp_path / "b" / "open_clip_model.safetensors").read_bytes()
    train(tmp_path / "c", TrainConfig(steps=2, batch_size=8, eval_every=10**9, warmup=1, seed=1))
    assert a != (tmp_path / "c" / "open_clip_model.safetensors").read_bytes()
    model = load_dual_encoder(f"open_clip:local-dir:{tmp_path / 'a'}")
    assert model.embed_dim == 128 and model.family == "clip"


def test_loss_averages_nested_prefixes_with_soft_targets():
    model, _ = build_model(TrainConfig())
    torch.manual_seed(0)
    img, txt = torch.randn(4, 128), torch.randn(4, 128)
    eye = torch.eye(4)
    full = contrastive_loss(img, txt, eye, model, (128,), "clip").detach()
    nested = contrastive_loss(img, txt, eye, model, (16, 128), "clip").detach()
    first = contrastive_loss(img, txt, eye, model, (16,), "clip").detach()
    assert math.isclose(float(nested), (float(full) + float(first)) / 2, rel_tol=1e-5)
    # caption 0 is also true of image 1 (a false negative under hard targets): the soft targets put half
    # of image 1's target mass on caption 0, in both directions
    soft = eye.clone()
    soft[1, 0] = 1
    scale = model.logit_scale.exp().detach()
    i, t = torch.nn.functional.normalize(img, dim=-1), torch.nn.functional.normalize(txt, dim=-1)
    logits = scale * i @ t.T
    i2t = -(soft / soft.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    t2i = -(soft.T / soft.T.sum(1, keepdim=True) * logits.T.log_softmax(1)).sum(1).mean()
    got = contrastive_loss(img, txt, soft, model, (128,), "clip").detach()
    assert math.isclose(float(got), float((i2t + t2i) / 2), rel_tol=1e-5)
    assert not math.isclose(float(got), float(full), rel_tol=1e-3)


def test_sigmoid_variant_trains_a_siglip_family_model(tmp_path):
    """The sigmoid loss falls: 20 steps take it from its starting value (about 30 with logit_bias -10
    and scale 10: every positive pair costs ~10) to well under half of it."""
    losses: list[float] = []
    train(tmp_path / "s", TrainConfig(steps=20, batch_size=16, eval_every=10**9, eval_n=20, warmup=3,
                                      loss="siglip"), progress=lambda step, entry: losses.append(entry["loss"]))
    assert len(losses) == 20 and losses[0] > 20
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:2]) / 2, losses
    model = load_dual_encoder(f"open_clip:local-dir:{tmp_path / 's'}")
    assert model.family == "siglip" and model.multi_label
    scale, bias = model.scale_and_bias()
    assert bias < -5 and scale > 1  # learned logit_bias initialised at -10, scale at 10


def test_time_aware_schedule_ends_on_time_not_mid_cosine():
    """With a time limit and ``schedule_by_time`` the cosine follows whichever of step and wall time is
    further along: a run that its time limit cuts at a third of its steps still ends near lr 0."""
    from vlserve.toyworld.train import schedule_progress

    cfg = TrainConfig(steps=3000, warmup=100, max_seconds=600.0, schedule_by_time=True)
    assert schedule_progress(cfg, 1000, 600.0) == 1.0
    assert schedule_progress(cfg, 1000, 300.0) == 0.5
    assert math.isclose(schedule_progress(cfg, 2900, 10.0), 2800 / 2900)
    plain = TrainConfig(steps=3000, warmup=100, max_seconds=600.0)  # by step only: cut mid-cosine
    assert math.isclose(schedule_progress(plain, 1000, 600.0), 900 / 2900)


def test_bf16_autocast_trains_and_saves_a_loadable_fp32_layout(tmp_path):
    """bf16 autocast (channels-last convolutions) is a speed option, not another model: the loss falls
    as in fp32 training, and the saved checkpoint loads through open_clip and encodes."""
    losses: list[float] = []
    train(tmp_path / "b", TrainConfig(steps=16, batch_size=16, eval_every=10**9, warmup=2, autocast="bf16"),
          progress=lambda step, entry: losses.append(entry["loss"]))
    assert sum(losses[-4:]) / 4 < sum(losses[:2]) / 2, losses
    model = load_dual_encoder(f"open_clip:local-dir:{tmp_path / 'b'}")
    emb = model.encode_texts(["a red circle"])
    assert emb.shape == (1, 128) and torch.isfinite(torch.from_numpy(emb)).all()
