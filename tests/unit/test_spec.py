from __future__ import annotations

import pytest

from vlserve.errors import UnknownModelSpec
from vlserve.models.spec import parse_spec
from vlserve.toyworld.model import TOY_DIR


def test_forms():
    assert parse_spec("toy").local_dir == str(TOY_DIR)
    s = parse_spec("open_clip:ViT-B-32/laion2b_s34b_b79k")
    assert (s.backend, s.arch, s.pretrained) == ("open_clip", "ViT-B-32", "laion2b_s34b_b79k")
    assert parse_spec("open_clip:ViT-B-16-SigLIP/webli").arch == "ViT-B-16-SigLIP"
    assert parse_spec("open_clip:ViT-B-32?init=random").random_init
    assert parse_spec("open_clip:local-dir:/some/dir").local_dir == "/some/dir"
    c = parse_spec("open_clip:/w/ckpt.safetensors?arch=ViT-B-32")
    assert (c.arch, c.pretrained) == ("ViT-B-32", "/w/ckpt.safetensors")
    assert parse_spec("hf:openai/clip-vit-base-patch32").hub_id == "openai/clip-vit-base-patch32"
    assert parse_spec("hf:/local/dir").local_dir == "/local/dir"
    assert parse_spec("open_clip:ViT-B-32?init=random").seed == 0
    assert parse_spec("open_clip:ViT-B-32?init=random&seed=7").seed == 7
    for raw in ("open_clip:ViT-B-32/laion2b_s34b_b79k", "open_clip:ViT-B-32?init=random",
                "open_clip:ViT-B-32?init=random&seed=7", "hf:org/name"):
        assert parse_spec(parse_spec(raw).canonical).canonical == parse_spec(raw).canonical


@pytest.mark.parametrize(("spec", "listed"), [
    ("nope:thing", "known schemes: open_clip, hf"),
    ("", "empty"),
    ("open_clip:ViT-Q-99/x", "known: "),  # lists the architectures
    ("open_clip:ViT-B-32/not_a_tag", "laion2b_s34b_b79k"),  # lists the tags
    ("open_clip:ViT-B-32", "?init=random"),
    ("open_clip:/w/ckpt.safetensors", "?arch=NAME"),
    ("open_clip:ViT-B-32?colour=red", "known: arch, init, seed"),
    ("open_clip:ViT-B-32?init=random&seed=x", "non-negative integer"),
    ("open_clip:ViT-B-32/laion2b_s34b_b79k?seed=1", "?init=random only"),
])
def test_unknown_specs_list_what_is_known(spec, listed):
    with pytest.raises(UnknownModelSpec) as e:
        parse_spec(spec)
    assert listed in str(e.value)
    assert "Known forms" in str(e.value)


def test_random_init_is_seeded_so_a_spec_always_means_the_same_weights():
    """Two loads of one ``?init=random`` spec (two Triton instances, an encoder and a classifier) are the
    same model with the same fingerprint; another seed is another model; the caller's RNG is untouched."""
    import torch

    from vlserve.models import load_dual_encoder

    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = load_dual_encoder("open_clip:ViT-S-32?init=random")
    assert torch.equal(torch.rand(3), before)
    b = load_dual_encoder("open_clip:ViT-S-32?init=random&seed=0")
    c = load_dual_encoder("open_clip:ViT-S-32?init=random&seed=1")
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert (a.encode_texts(["a red star"]) == b.encode_texts(["a red star"])).all()
