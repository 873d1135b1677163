"""The embedded default model is part of the product: its committed files must be there. A checkout
without them fails here (and in every test that loads ``toy``) instead of skipping quietly."""

from __future__ import annotations

from vlserve.toyworld.model import TOY_DIR

TOY_FILES = ("open_clip_config.json", "open_clip_model.safetensors")


def test_committed_toy_weights_are_present():
    missing = [str(TOY_DIR / name) for name in TOY_FILES if not (TOY_DIR / name).is_file()]
    assert not missing, (
        f"committed toy model files missing: {', '.join(missing)}. The default model spec 'toy' cannot load "
        "without them: restore them (git checkout -- vlserve/assets/toy; with Git LFS, git lfs pull) or retrain "
        "with `vlserve toyworld train`.")
    assert (TOY_DIR / "open_clip_model.safetensors").stat().st_size > 1_000_000, "toy weights file is truncated"


def test_committed_toy_denseclip_head_is_present_bound_to_the_toy_model_and_small():
    import json

    from vlserve.dense.service import TOY_HEAD_DIR
    from vlserve.models import load_dual_encoder

    assert (TOY_HEAD_DIR / "head.json").is_file() and (TOY_HEAD_DIR / "head.safetensors").is_file(), (
        "the embedded DenseCLIP head is missing: restore vlserve/assets/toy_denseclip or retrain it with "
        "`vlserve dense train --model toy`")
    meta = json.loads((TOY_HEAD_DIR / "head.json").read_text())
    assert meta["encoder_fingerprint"] == load_dual_encoder("toy").fingerprint, "head trained for other toy weights"
    assert (TOY_HEAD_DIR / "head.safetensors").stat().st_size <= 25 * 2**20
    assert meta["train"]["provenance"]["command"].startswith("vlserve dense train")
    assert meta["train"]["seconds"] <= 3600  # drawing the training scenes included
