"""Wiring of the training-free dense methods on tiny towers built from configs (open_clip ViT and
ModifiedResNet, transformers CLIP): each method is the formula its docstring gives, the towers are
left untouched, and the ViT ``vanilla`` path is the tower's own forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import OPEN_CLIP_TINY

from vlserve.dense.towers import METHODS, dense_embeddings
from vlserve.errors import Unsupported

RESNET_TINY = {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16, "head_width": 16},
               "text_cfg": OPEN_CLIP_TINY["text_cfg"]}


def _open_clip(cfg: dict, seed: int = 0):
    from open_clip.model import CLIP

    torch.manual_seed(seed)
    return CLIP(**cfg).eval()


def _hf_clip(seed: int = 0):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    return CLIPModel(CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "max_position_embeddings": 16, "vocab_size": 49408},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=24)).eval()


@torch.no_grad()
def test_open_clip_vit_vanilla_is_the_towers_own_forward_and_the_tower_is_unchanged() -> None:
    model = _open_clip(OPEN_CLIP_TINY)
    pixels = torch.randn(2, 3, 32, 32)
    before = model.encode_image(pixels)
    model.visual.output_tokens = True
    _, tokens = model.visual(pixels)  # after the final norm, before the projection
    model.visual.output_tokens = False
    maps = {m: dense_embeddings(model, pixels, m) for m in METHODS}
    assert maps["vanilla"].shape == (2, 32, 4, 4)
    want = (tokens @ model.visual.proj).transpose(1, 2).reshape(2, 32, 4, 4)
    assert torch.allclose(maps["vanilla"], want, atol=1e-5)
    assert torch.allclose(model.encode_image(pixels), before, atol=1e-6)  # nothing left behind
    for m in ("maskclip", "sclip", "clearclip"):
        assert not torch.allclose(maps[m], maps["vanilla"], atol=1e-3), m  # each changes the last block


@torch.no_grad()
def test_hf_clip_vanilla_is_transformers_own_tokens_and_the_tower_is_unchanged() -> None:
    """Vanilla's patch embeddings are transformers' own last hidden states through the final norm and
    the visual projection; a dense call leaves the tower's image embedding as it was."""
    model = _hf_clip()
    pixels = torch.randn(1, 3, 32, 32)
    before = model.get_image_features(pixel_values=pixels).pooler_output
    hidden = model.vision_model(pixel_values=pixels).last_hidden_state  # before the final norm
    want = model.visual_projection(model.vision_model.post_layernorm(hidden[:, 1:]))
    got = dense_embeddings(model, pixels, "vanilla")
    assert torch.allclose(got, want.transpose(1, 2).reshape(1, 24, 4, 4), atol=1e-5)
    assert torch.allclose(model.get_image_features(pixel_values=pixels).pooler_output, before, atol=1e-6)
    for m in METHODS:
        assert dense_embeddings(model, pixels, m).shape == (1, 24, 4, 4)


@torch.no_grad()
def test_maskclip_on_identical_tokens_equals_the_trained_block() -> None:
    """When every token entering the last block is the same, attention of any shape averages equal
    values, so MaskCLIP's value path gives what the trained block gives; SCLIP's two softmaxes sum
    to 2 per row, so it adds the value path twice; ClearCLIP drops the residual and the FFN."""
    from vlserve.dense.towers import LastBlock, last_block

    model = _open_clip(OPEN_CLIP_TINY)
    blk = model.visual.transformer.resblocks[-1]
    attn = blk.attn
    width = attn.embed_dim

    def qkv(h):
        return torch.nn.functional.linear(h, attn.in_proj_weight, attn.in_proj_bias).split(width, dim=-1)

    block = LastBlock(blk.ln_1, qkv, attn.out_proj, blk.ln_2, blk.mlp, attn.num_heads, lambda t: t)
    x = torch.randn(1, 1, width).expand(2, 5, width).contiguous()
    trained = blk(x)
    assert torch.allclose(last_block(block, x, "vanilla"), trained, atol=1e-5)
    assert torch.allclose(last_block(block, x, "maskclip"), trained, atol=1e-5)
    value_path = attn.out_proj(qkv(blk.ln_1(x))[2])
    twice = x + 2 * value_path - attn.out_proj.bias
    assert torch.allclose(last_block(block, x, "sclip"), twice + blk.mlp(blk.ln_2(twice)), atol=1e-5)
    assert torch.allclose(last_block(block, x, "clearclip"), value_path, atol=1e-5)


@torch.no_grad()
def test_resnet_maskclip_is_the_pools_value_and_output_projections() -> None:
    """MaskCLIP on a ResNet tower: C(V(x)) at every position; on a constant feature map with the
    pool's positional embeddings zeroed, that is exactly the attention pool's own output."""
    model = _open_clip(RESNET_TINY)
    visual = model.visual
    pixels = torch.randn(2, 3, 64, 64)
    before = model.encode_image(pixels)
    maps = dense_embeddings(model, pixels, "maskclip")
    assert maps.shape == (2, 32, 2, 2)
    trunk = visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(pixels)))))
    pool = visual.attnpool
    want = pool.c_proj(pool.v_proj(trunk.flatten(2).transpose(1, 2))).transpose(1, 2).reshape(2, 32, 2, 2)
    assert torch.allclose(maps, want, atol=1e-5)
    constant = torch.randn(1, trunk.shape[1], 1, 1).expand(1, -1, 2, 2).contiguous()
    saved = pool.positional_embedding.detach().clone()
    pool.positional_embedding.zero_()
    try:
        pooled = pool(constant)
        assert torch.allclose(pool.c_proj(pool.v_proj(constant[:, :, 0, 0])), pooled, atol=1e-5)
    finally:
        pool.positional_embedding.copy_(saved)
    vanilla = dense_embeddings(model, pixels, "vanilla")
    assert vanilla.shape == maps.shape and not torch.allclose(vanilla, maps, atol=1e-3)
    assert torch.allclose(model.encode_image(pixels), before, atol=1e-6)


def test_methods_a_tower_cannot_take_are_refused_by_name() -> None:
    model = _open_clip(RESNET_TINY)
    with pytest.raises(Unsupported, match="ResNet tower"):
        dense_embeddings(model, torch.randn(1, 3, 64, 64), "sclip")
    with pytest.raises(Unsupported, match="unknown dense method 'nope'"):
        dense_embeddings(model, torch.randn(1, 3, 64, 64), "nope")  # type: ignore[arg-type]
    with pytest.raises(Unsupported, match="CLIP image tower"):
        dense_embeddings(torch.nn.Linear(2, 2), torch.randn(1, 3, 8, 8), "vanilla")


def test_score_maps_are_cosines_upsampled_and_segment_takes_the_best_label() -> None:
    from vlserve.dense.maps import BACKGROUND, score_maps, segment

    dense = torch.zeros(1, 2, 2, 2)
    dense[0, 0, :, 0] = 3.0  # left column points along label 0
    dense[0, 1, :, 1] = 0.5  # right column along label 1
    labels = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    scores = score_maps(dense, labels, (2, 2))
    assert torch.allclose(scores[0, 0], torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    up = score_maps(dense, labels, (4, 8))
    assert up.shape == (1, 2, 4, 8) and float(up.max()) <= 1.0 + 1e-6
    seg = segment(up)
    assert seg[0, :, 0].tolist() == [0] * 4 and seg[0, :, -1].tolist() == [1] * 4
    lowered = segment(scores * torch.tensor([1.0, 0.3]).view(1, 2, 1, 1), background_threshold=0.5)
    assert lowered[0].tolist() == [[0, BACKGROUND], [0, BACKGROUND]]


@torch.no_grad()
def test_resnet_towers_take_inputs_larger_than_trained_with_a_larger_grid() -> None:
    model = _open_clip(RESNET_TINY)
    for method in ("vanilla", "maskclip"):
        assert dense_embeddings(model, torch.randn(1, 3, 128, 128), method).shape == (1, 32, 4, 4), method


def test_siglip_pooling_head_value_path(tiny_dirs) -> None:
    """SigLIP (transformers): the value path of the attention-pooling head at every token; with all
    tokens equal it is the head's own pooled output; the tower is unchanged by a dense call; the
    methods that read a block's attention are refused; PixelText serves it end to end."""
    from vlserve.dense.segmenter import PixelText
    from vlserve.dense.towers import siglip_value_path
    from vlserve.models import load_dual_encoder

    encoder = load_dual_encoder(f"hf:{tiny_dirs['hf_siglip']}")
    model, pixels = encoder.model, torch.randn(2, 3, *encoder.image_size)
    head = model.vision_model.head
    tokens = torch.randn(1, 1, head.probe.shape[-1]).repeat(2, 9, 1)
    with torch.no_grad():
        assert torch.allclose(siglip_value_path(head, tokens)[:, 3], head(tokens), atol=1e-5)
        before = encoder._image_features(pixels)
        dense = dense_embeddings(model, pixels, "maskclip")
        assert torch.allclose(encoder._image_features(pixels), before, atol=1e-6)
    patch = model.vision_model.config.patch_size
    assert dense.shape == (2, before.shape[-1], pixels.shape[-2] // patch, pixels.shape[-1] // patch)
    with pytest.raises(Unsupported, match="attention-pooling head takes: maskclip"):
        dense_embeddings(model, pixels, "sclip")
    rng = np.random.default_rng(0)
    (result,) = PixelText(encoder).segment([rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)], ["a", "b"])
    assert result.scores.shape == (2, 40, 50)
