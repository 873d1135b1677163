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
    for raw in ("open_clip:ViT-B-32/laion2b_s34b_b79k", "open_clip:ViT-B-32?init=random", "hf:org/name"):
        assert parse_spec(parse_spec(raw).canonical).canonical == parse_spec(raw).canonical


@pytest.mark.parametrize(("spec", "listed"), [
    ("nope:thing", "known schemes: open_clip, hf"),
    ("", "empty"),
    ("open_clip:ViT-Q-99/x", "known: "),  # lists the architectures
    ("open_clip:ViT-B-32/not_a_tag", "laion2b_s34b_b79k"),  # lists the tags
    ("open_clip:ViT-B-32", "?init=random"),
    ("open_clip:/w/ckpt.safetensors", "?arch=NAME"),
    ("open_clip:ViT-B-32?colour=red", "known: arch, init"),
])
def test_unknown_specs_list_what_is_known(spec, listed):
    with pytest.raises(UnknownModelSpec) as e:
        parse_spec(spec)
    assert listed in str(e.value)
    assert "Known forms" in str(e.value)
