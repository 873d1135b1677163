"""The DenseCLIP head (Rao et al., *DenseCLIP: Language-Guided Dense Prediction with Context-Aware
Prompting*, CVPR 2022), open-vocabulary: any labels at inference, the encoder frozen.

Given a CLIP model whose image tower yields a feature pyramid (``levels``: strides 4, 8, 16, 32),
a dense embedding map ``z`` in the joint space and a global embedding ``g``
(:func:`vlserve.dense.towers.pyramid`), and labels:

1. **Context-aware prompting, language side** (CoOp-style): a label's text is ``[ctx] label``, where
   ``ctx`` is ``n`` learnable token embeddings (initialised from the embeddings of "a photo of a",
   so an untrained head starts at the zero-shot template) run through the frozen text tower.
   A learnable **background** embedding joins the labels as label 0.
2. **Vision-to-language prompting** (DenseCLIP's post-model prompting): a small transformer decoder
   in which the label embeddings ``t`` attend to the visual context ``[g; z]``, added back through a
   γ-scaled residual, ``t' = t + γ ⊙ Dec(t, [g; z])`` with γ initialised to 1e-4 per dimension.
3. **Pixel-text score maps** ``s = cos(z, t')`` on the tower's grid. They carry an auxiliary loss
   (cross-entropy of ``s / τ``) and are extra input channels to the decoder.
4. **Decoder** (semantic FPN): lateral 1x1 convolutions and a top-down pathway over the pyramid, each
   level brought to stride 4 and summed into ``P``. Labels are open-ended, so the decoder's label
   channels are computed per label with shared weights: for label ``l``,
   ``h_l = ReLU(GN(A·P + a·cos(E, t'_l) + b·up(s_l) + B·t'_l))`` with ``E = W·P`` pixel embeddings,
   then a 3x3 convolution, ReLU and a 1x1 convolution give the label's logit map, to which
   ``κ·cos(E, t'_l)`` is added.

The segmentation is the argmax over ``[background, labels...]``; background is reported as ``-1``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vlserve.errors import InvalidInput, ModelUnavailable

CONTEXT_INIT = "a photo of a"


@dataclass(frozen=True)
class HeadConfig:
    level_channels: tuple[int, ...]  # the pyramid's channels, strides 4, 8, 16, 32
    embed_dim: int  # the joint space
    input_size: int = 128  # images are resized whole to input_size x input_size (PixelText.pixels)
    fpn_channels: int = 64
    label_channels: int = 32
    decoder_width: int = 64
    decoder_layers: int = 2
    decoder_heads: int = 4
    context_init: str = CONTEXT_INIT
    tau: float = 0.07  # score-map temperature of the auxiliary loss (DenseCLIP's)


def _conv(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.GroupNorm(8, cout), nn.ReLU())


class ContextDecoder(nn.Module):
    """DenseCLIP's vision-to-language decoder: labels (queries) attend to the visual context."""

    def __init__(self, dim: int, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.memory_in = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, width), nn.LayerNorm(width))
        self.text_in = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, width))
        layer = nn.TransformerDecoderLayer(width, heads, 4 * width, dropout=0.1, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim))

    def forward(self, text: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """``text`` [N, L, D], ``visual`` [N, M, D] -> [N, L, D]."""
        return self.out(self.decoder(self.text_in(text), self.memory_in(visual)))


class SemanticFPN(nn.Module):
    """FPN laterals + top-down pathway, then each level brought to stride 4 and summed (Kirillov et al.
    2019, the decoder DenseCLIP uses)."""

    def __init__(self, channels: tuple[int, ...], width: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels)
        self.smooth = nn.ModuleList(_conv(width, width) for _ in channels)
        self.scale = nn.ModuleList(nn.Sequential(*[_conv(width, width) for _ in range(max(i, 1))])
                                   for i in range(len(channels)))

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        lat = [f(x) for f, x in zip(self.lateral, levels, strict=True)]
        for i in range(len(lat) - 1, 0, -1):
            lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=lat[i - 1].shape[-2:], mode="nearest")
        size = lat[0].shape[-2:]
        out: torch.Tensor | None = None
        for i, (smooth, scale, x) in enumerate(zip(self.smooth, self.scale, lat, strict=True)):
            y = smooth(x)
            convs: list[nn.Module] = list(scale.children())
            for j, conv in enumerate(convs):
                y = conv(y)
                if i > 0 and j < i:
                    y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
            y = y if y.shape[-2:] == size else F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            out = y if out is None else out + y
        assert out is not None
        return out


class DenseCLIPHead(nn.Module):
    """The trainable parts (the CLIP model stays frozen and is passed in, never stored)."""

    def __init__(self, cfg: HeadConfig, context: torch.Tensor, background: torch.Tensor) -> None:
        super().__init__()
        if cfg.fpn_channels % 8 or cfg.label_channels % 8:
            raise InvalidInput(f"fpn_channels ({cfg.fpn_channels}) and label_channels ({cfg.label_channels}) must "
                               "be multiples of 8 (group norm of 8 groups)", field="channels")
        self.cfg = cfg
        d, width, lc = cfg.embed_dim, cfg.fpn_channels, cfg.label_channels
        self.context = nn.Parameter(context.detach().clone().float())  # [n, text width]
        self.background = nn.Parameter(background.detach().clone().float())  # [D]
        self.context_decoder = ContextDecoder(d, cfg.decoder_width, cfg.decoder_layers, cfg.decoder_heads)
        self.gamma = nn.Parameter(torch.full((d,), 1e-4))
        self.fpn = SemanticFPN(cfg.level_channels, width)
        self.pixel_embed = nn.Conv2d(width, d, 1)
        self.pixel_in = nn.Conv2d(width, lc, 1)
        self.cos_in = nn.Parameter(torch.randn(lc) * 0.1)
        self.score_in = nn.Parameter(torch.randn(lc) * 0.1)
        self.text_in = nn.Linear(d, lc)
        self.label_out = nn.Sequential(nn.GroupNorm(8, lc), nn.ReLU(), nn.Conv2d(lc, lc, 3, padding=1), nn.ReLU(),
                                       nn.Conv2d(lc, 1, 1))
        self.kappa = nn.Parameter(torch.tensor(10.0))

    # ---- language side ----------------------------------------------------------------------------
    def encode_labels(self, clip: Any, tokenizer: Any, labels: list[str]) -> torch.Tensor:
        """``[L, D]`` embeddings of ``labels`` with the learned context in place of "a photo of a"."""
        from open_clip.transformer import text_global_pool

        n = self.context.shape[0]
        tokens = tokenizer([f"{self.cfg.context_init} {label}" for label in labels]).to(self.context.device)
        cast = clip.transformer.get_cast_dtype()
        x = clip.token_embedding(tokens).to(cast)
        x = torch.cat([x[:, :1], self.context.to(cast)[None].expand(len(labels), -1, -1), x[:, 1 + n:]], dim=1)
        x = x + clip.positional_embedding.to(cast)
        x = clip.transformer(x, attn_mask=clip.attn_mask)
        x = clip.ln_final(x)
        x = text_global_pool(x, tokens, clip.text_pool_type, eos_token_id=getattr(clip, "text_eos_id", None))
        proj = clip.text_projection
        return (proj(x) if isinstance(proj, nn.Linear) else x @ proj).float()

    # ---- image side ---------------------------------------------------------------------------------
    def forward(self, levels: list[torch.Tensor], dense: torch.Tensor, global_: torch.Tensor,
                labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[N, 1 + L, H/4, W/4]`` (background first) and score maps ``[N, 1 + L, h, w]``
        (the tower's grid) for label embeddings ``labels`` [L, D]."""
        n = dense.shape[0]
        text = torch.cat([self.background[None], labels.to(self.background.dtype)])[None].expand(n, -1, -1)
        visual = torch.cat([global_[:, None], dense.flatten(2).transpose(1, 2)], dim=1)
        text = text + self.gamma * self.context_decoder(text, visual)  # [N, L+1, D]
        text_n = F.normalize(text, dim=-1)
        scores = torch.einsum("ndhw,nld->nlhw", F.normalize(dense, dim=1), text_n)
        p = self.fpn(levels)
        size = p.shape[-2:]
        cos = torch.einsum("ndhw,nld->nlhw", F.normalize(self.pixel_embed(p), dim=1), text_n)
        up = F.interpolate(scores, size=size, mode="bilinear", align_corners=False)
        h = (self.pixel_in(p)[:, None] + self.cos_in[None, None, :, None, None] * cos[:, :, None]
             + self.score_in[None, None, :, None, None] * up[:, :, None]
             + self.text_in(text)[..., None, None])  # [N, L+1, C, H4, W4]
        k = h.shape[1]
        logits = self.label_out(h.flatten(0, 1)).reshape(n, k, *size) + self.kappa * cos
        return logits, scores

    def read(self, pyr: Any, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` on a :class:`~vlserve.dense.towers.Pyramid` (any dtype: the head runs fp32)."""
        return self([lv.float() for lv in pyr.levels], pyr.dense.float(), pyr.global_.float(), labels.float())

    # ---- files ----------------------------------------------------------------------------------------
    def save(self, folder: Path, encoder_spec: str, encoder_fingerprint: str, extra: dict[str, Any]) -> Path:
        """``head.safetensors`` (fp16) + ``head.json`` (config, the encoder it belongs to, training record)."""
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().half().contiguous() for k, v in self.state_dict().items()},
                  str(folder / "head.safetensors"))
        meta = {"kind": "denseclip-head", "config": asdict(self.cfg), "encoder_spec": encoder_spec,
                "encoder_fingerprint": encoder_fingerprint, **extra}
        (folder / "head.json").write_text(json.dumps(meta, indent=2) + "\n")
        return folder


def load_head(folder: Path, encoder_fingerprint: str) -> tuple[DenseCLIPHead, dict[str, Any]]:
    """The head saved in ``folder``, refused unless it was trained on the encoder with this fingerprint."""
    from safetensors.torch import load_file

    meta_path = folder / "head.json"
    if not meta_path.is_file() or not (folder / "head.safetensors").is_file():
        raise ModelUnavailable(f"{folder} holds no DenseCLIP head (expected head.json + head.safetensors)")
    meta = json.loads(meta_path.read_text())
    if meta.get("encoder_fingerprint") != encoder_fingerprint:
        raise InvalidInput(f"the DenseCLIP head in {folder} was trained on encoder {meta.get('encoder_spec')!r} "
                           f"(fingerprint {meta.get('encoder_fingerprint')}); this encoder's fingerprint is "
                           f"{encoder_fingerprint}: train a head for it with `vlserve dense train`", field="head")
    raw = dict(meta["config"])
    raw["level_channels"] = tuple(raw["level_channels"])
    cfg = HeadConfig(**raw)
    state = {k: v.float() for k, v in load_file(str(folder / "head.safetensors")).items()}
    head = DenseCLIPHead(cfg, state["context"], state["background"])
    head.load_state_dict(state)
    return head.eval().requires_grad_(False), meta
