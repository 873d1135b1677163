"""Dense (per-location) image embeddings from CLIP image towers, training-free.

A CLIP image tower is trained to give one embedding per image; its patch tokens (or, for a ResNet,
the positions of its last feature map) are not aligned with the text by that training, and the
methods below change only the tower's **last** step so that every location gets an embedding in
the text space. Nothing is trained and no module is changed: the functions read the tower's own
weights and compute the last step themselves, so the tower's global embeddings stay as they were.

ViT towers (open_clip ``VisionTransformer``, transformers ``CLIPVisionModel``), with ``x`` the tokens
entering the last block, ``LN1``/``LN2`` its norms, ``q, k, v`` its projections of ``LN1(x)``
(per head, scaled by ``1/sqrt(d_head)`` inside the softmax), ``O`` its output projection, ``FFN``
its MLP, and every result then put through the tower's final norm and projection:

* ``vanilla``: the last block as trained, ``y = x + O(softmax(q kᵀ) v)``, ``y = y + FFN(LN2(y))``:
  the baseline every method below beats.
* ``maskclip`` (Zhou et al., *Extract Free Dense Labels from CLIP*, ECCV 2022): the value path
  alone, no query-key attention: ``y = x + O(v)``, ``y = y + FFN(LN2(y))``.
* ``sclip`` (Wang et al., *SCLIP: Rethinking Self-Attention for Dense Vision-Language Inference*,
  2023): correlative self-attention, ``y = x + O((softmax(q qᵀ) + softmax(k kᵀ)) v)``,
  ``y = y + FFN(LN2(y))``.
* ``clearclip`` (Lan et al., *ClearCLIP: Decomposing CLIP Representations for Dense
  Vision-Language Inference*, ECCV 2024): q-q attention with the residual connection and the
  feed-forward network removed, ``y = O(softmax(q qᵀ) v)``.

ResNet towers (open_clip ``ModifiedResNet``, the embedded ``toy`` model), with ``x`` the last
feature map and the attention pool's projections ``V`` (value) and ``C`` (output):

* ``vanilla``: the attention pool run with every position as its query (positional embeddings
  added, as in training; resized bicubically when the input is larger than the trained size).
* ``maskclip``: ``C(V(x))`` at every position (MaskCLIP's ResNet head: the value and output
  projections as 1x1 convolutions on the feature map, no attention, no positional embedding).
  SCLIP and ClearCLIP are defined on transformer blocks only; for a ResNet they are refused.

SigLIP towers (transformers ``SiglipModel``: a probe attends to the tokens in an attention-pooling
head) take ``maskclip`` through the same value-path idea: :func:`siglip_value_path`.

Every function returns un-normalised embeddings ``[N, D, h, w]`` on the tower's output grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from vlserve.errors import Unsupported

Method = Literal["vanilla", "maskclip", "sclip", "clearclip"]
METHODS: tuple[Method, ...] = ("vanilla", "maskclip", "sclip", "clearclip")
RESNET_METHODS: tuple[Method, ...] = ("vanilla", "maskclip")


@dataclass
class LastBlock:
    """The pieces of a ViT's last block (and what follows it) that the methods recombine."""

    ln_1: Callable[[torch.Tensor], torch.Tensor]
    qkv: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # [N, L, D] each
    out_proj: Callable[[torch.Tensor], torch.Tensor]
    ln_2: Callable[[torch.Tensor], torch.Tensor]
    mlp: Callable[[torch.Tensor], torch.Tensor]
    heads: int
    head: Callable[[torch.Tensor], torch.Tensor]  # final norm, then projection to the joint space


def _attend(weights: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    n, heads, length, d = v.shape
    return (weights @ v).transpose(1, 2).reshape(n, length, heads * d)


def _split(t: torch.Tensor, heads: int) -> torch.Tensor:
    n, length, width = t.shape
    return t.reshape(n, length, heads, width // heads).transpose(1, 2)


def last_block(block: LastBlock, x: torch.Tensor, method: Method) -> torch.Tensor:
    """The tokens after the last block (before the final norm) for ``method``; ``x`` [N, L, D]."""
    q, k, v = (_split(t, block.heads) for t in block.qkv(block.ln_1(x)))
    scale = 1.0 / math.sqrt(q.shape[-1])
    if method == "vanilla":
        y = x + block.out_proj(_attend(torch.softmax(q @ k.transpose(-1, -2) * scale, -1), v))
    elif method == "maskclip":
        y = x + block.out_proj(_attend(torch.eye(x.shape[1], dtype=x.dtype, device=x.device), v))
    elif method == "sclip":
        weights = (torch.softmax(q @ q.transpose(-1, -2) * scale, -1)
                   + torch.softmax(k @ k.transpose(-1, -2) * scale, -1))
        y = x + block.out_proj(_attend(weights, v))
    elif method == "clearclip":
        return block.out_proj(_attend(torch.softmax(q @ q.transpose(-1, -2) * scale, -1), v))
    else:
        raise Unsupported(f"unknown dense method {method!r}; methods: {', '.join(METHODS)}", field="method")
    return y + block.mlp(block.ln_2(y))


def _grid(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Patch tokens [N, h*w, D] -> [N, D, h, w]."""
    n, _, d = tokens.shape
    return tokens.transpose(1, 2).reshape(n, d, *grid)


# ---- open_clip ------------------------------------------------------------------------------------

def _open_clip_vit(visual: Any, pixels: torch.Tensor, method: Method) -> torch.Tensor:
    if getattr(visual, "attn_pool", None) is not None or visual.transformer.batch_first is False:
        raise Unsupported("dense maps support open_clip ViTs with a class token and batch-first blocks "
                          "(CLIP-style); this tower pools differently", field="model")
    x = visual._embeds(pixels)
    for block in visual.transformer.resblocks[:-1]:
        x = block(x)
    last = visual.transformer.resblocks[-1]
    attn = last.attn
    width = x.shape[-1]

    def qkv(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, k, v = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).split(width, dim=-1)
        return q, k, v

    def head(t: torch.Tensor) -> torch.Tensor:
        t = visual.ln_post(t)
        return t @ visual.proj if visual.proj is not None else t

    block = LastBlock(last.ln_1, qkv, attn.out_proj, last.ln_2, lambda h: last.ls_2(last.mlp(h)), attn.num_heads,
                      head)
    grid = (pixels.shape[-2] // visual.patch_size[0], pixels.shape[-1] // visual.patch_size[1])
    return _grid(head(last_block(block, x, method))[:, 1:], grid)


def _resnet_trunk(visual: Any, pixels: torch.Tensor) -> list[torch.Tensor]:
    """The feature maps after each of ``layer1..layer4`` (strides 4, 8, 16, 32)."""
    x = visual.stem(pixels)
    levels = []
    for layer in (visual.layer1, visual.layer2, visual.layer3, visual.layer4):
        x = layer(x)
        levels.append(x)
    return levels


def _resnet_pool(pool: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The attention pool queried at the mean token (the global embedding, as trained) and at every
    position: ``([N, D], [N, D, h, w])``."""
    _, c, h, w = x.shape
    tokens = x.flatten(2).permute(2, 0, 1)  # (h*w) N C
    tokens = torch.cat([tokens.mean(dim=0, keepdim=True), tokens]) + _resnet_positions(pool, h, w)[:, None, :]
    out, _ = F.multi_head_attention_forward(
        query=tokens, key=tokens, value=tokens, embed_dim_to_check=c, num_heads=pool.num_heads,
        q_proj_weight=pool.q_proj.weight, k_proj_weight=pool.k_proj.weight, v_proj_weight=pool.v_proj.weight,
        in_proj_weight=None, in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
        bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0, out_proj_weight=pool.c_proj.weight,
        out_proj_bias=pool.c_proj.bias, use_separate_proj_weight=True, training=False, need_weights=False)
    out = out.transpose(0, 1)  # N (1+h*w) D
    return out[:, 0], _grid(out[:, 1:], (h, w))


def _open_clip_resnet(visual: Any, pixels: torch.Tensor, method: Method) -> torch.Tensor:
    if method not in RESNET_METHODS:
        raise Unsupported(f"dense method {method!r} is defined on transformer blocks; a ResNet tower (this "
                          f"model) takes: {', '.join(RESNET_METHODS)}", field="method")
    x = _resnet_trunk(visual, pixels)[-1]
    pool = visual.attnpool
    if method == "maskclip":
        flat = x.flatten(2).transpose(1, 2)  # [N, h*w, C]
        return _grid(pool.c_proj(pool.v_proj(flat)), (x.shape[-2], x.shape[-1]))
    return _resnet_pool(pool, x)[1]


def normalise(images: np.ndarray, mean: Sequence[float], std: Sequence[float],
              device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` -> float ``[N, 3, H, W]``, scaled to [0, 1] and normalised with the tower's
    mean and std (the same for training a head and for serving)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float().div_(255)
    return (x - torch.tensor(list(mean), device=device).view(1, 3, 1, 1)) / \
        torch.tensor(list(std), device=device).view(1, 3, 1, 1)


def resize_whole(image: Any, size: tuple[int, int]) -> np.ndarray:
    """A PIL image resized, whole (no crop), to ``size`` (H, W), bicubic, as uint8 RGB."""
    from PIL import Image

    return np.asarray(image.convert("RGB").resize((size[1], size[0]), Image.Resampling.BICUBIC))


@dataclass
class Pyramid:
    """What a DenseCLIP head reads from an image tower in one pass."""

    levels: list[torch.Tensor]  # feature maps at strides 4, 8, 16, 32
    dense: torch.Tensor  # [N, D, h, w] joint-space embedding at every position of the last grid
    global_: torch.Tensor  # [N, D] the tower's own image embedding


def pyramid_channels(model: Any) -> tuple[int, ...]:
    """The channels of :func:`pyramid`'s levels for ``model`` (refusing towers it does not read)."""
    visual = getattr(model, "visual", None)
    if visual is None or not hasattr(visual, "attnpool"):
        raise Unsupported("the DenseCLIP head reads open_clip ResNet towers (ModifiedResNet, attention "
                          "pooling), such as the embedded toy model; this tower is not one", field="model")
    return tuple(int(layer[-1].conv3.out_channels) for layer in
                 (visual.layer1, visual.layer2, visual.layer3, visual.layer4))


def pyramid(model: Any, pixels: torch.Tensor) -> Pyramid:
    """The ResNet tower's feature pyramid, dense embeddings (its attention pool at every position:
    DenseCLIP's ResNet reading) and global embedding, from one pass."""
    pyramid_channels(model)
    levels = _resnet_trunk(model.visual, pixels)
    global_, dense = _resnet_pool(model.visual.attnpool, levels[-1])
    return Pyramid(levels, dense, global_)


def _resnet_positions(pool: Any, h: int, w: int) -> torch.Tensor:
    """The attention pool's positional embeddings for an ``h x w`` map: as trained, or the trained
    grid resized bicubically (an input larger than the trained size gives a larger map)."""
    pos = pool.positional_embedding
    side = round(math.sqrt(pos.shape[0] - 1))
    if side * side == h * w and side == h:
        return pos
    grid = pos[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
    return torch.cat([pos[:1], grid.permute(0, 2, 3, 1).reshape(h * w, -1)])


# ---- transformers CLIP ----------------------------------------------------------------------------

def _hf_clip_vit(model: Any, pixels: torch.Tensor, method: Method) -> torch.Tensor:
    vision = model.vision_model
    x = vision.pre_layrnorm(vision.embeddings(pixels))
    layers = vision.encoder.layers
    for layer in layers[:-1]:
        x = layer(x, None)
    last = layers[-1]
    attn = last.self_attn

    def qkv(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return attn.q_proj(h), attn.k_proj(h), attn.v_proj(h)

    def head(t: torch.Tensor) -> torch.Tensor:
        return model.visual_projection(vision.post_layernorm(t))

    block = LastBlock(last.layer_norm1, qkv, attn.out_proj, last.layer_norm2, last.mlp, attn.num_heads, head)
    patch = vision.config.patch_size
    return _grid(head(last_block(block, x, method))[:, 1:], (pixels.shape[-2] // patch, pixels.shape[-1] // patch))


# ---- transformers SigLIP ---------------------------------------------------------------------------

SIGLIP_METHODS: tuple[Method, ...] = ("maskclip",)


def siglip_value_path(head: Any, tokens: torch.Tensor) -> torch.Tensor:
    """SigLIP's attention-pooling head applied at every token through its value path (MaskCLIP's idea
    for a pooling head): ``o = O(V(t))`` (what the head's attention gives a probe that attends to one
    token only), then the head's own residual MLP, ``o + MLP(LN(o))``. ``tokens`` [N, L, D] -> [N, L, D].
    When all tokens are equal the probe's attention is uniform over equal values, so this equals the
    head's pooled output."""
    attn = head.attention
    width = tokens.shape[-1]
    v = F.linear(tokens, attn.in_proj_weight[2 * width:], attn.in_proj_bias[2 * width:])
    o = attn.out_proj(v)
    return o + head.mlp(head.layernorm(o))


def _hf_siglip(model: Any, pixels: torch.Tensor, method: Method) -> torch.Tensor:
    if method not in SIGLIP_METHODS:
        raise Unsupported(f"dense method {method!r} reads a transformer block's attention; a SigLIP tower's "
                          f"attention-pooling head takes: {', '.join(SIGLIP_METHODS)}", field="method")
    vision = model.vision_model
    hidden = vision.encoder(inputs_embeds=vision.embeddings(pixels)).last_hidden_state
    tokens = vision.post_layernorm(hidden)
    patch = vision.config.patch_size
    return _grid(siglip_value_path(vision.head, tokens), (pixels.shape[-2] // patch, pixels.shape[-1] // patch))


@torch.no_grad()
def dense_embeddings(model: Any, pixels: torch.Tensor, method: Method) -> torch.Tensor:
    """``[N, D, h, w]`` embeddings in the joint space at every location of ``pixels``' output grid.

    ``model`` is an open_clip ``CLIP`` (ViT or ModifiedResNet tower) or a transformers ``CLIPModel``."""
    if method not in METHODS:
        raise Unsupported(f"unknown dense method {method!r}; methods: {', '.join(METHODS)}", field="method")
    visual = getattr(model, "visual", None)
    if visual is not None and hasattr(visual, "attnpool"):
        return _open_clip_resnet(visual, pixels, method)
    if visual is not None and hasattr(visual, "transformer"):
        return _open_clip_vit(visual, pixels, method)
    if hasattr(model, "vision_model") and getattr(model.vision_model, "head", None) is not None:
        return _hf_siglip(model, pixels, method)
    if hasattr(model, "vision_model") and hasattr(model, "visual_projection"):
        return _hf_clip_vit(model, pixels, method)
    raise Unsupported(f"dense maps need a CLIP image tower (ViT or ResNet with attention pooling); "
                      f"{type(model).__name__} is not one", field="model")
