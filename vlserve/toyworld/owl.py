"""The toy detector's architecture: a tiny OWL-ViT in transformers' own config and format.

OWL-ViT (Minderer et al. 2022) is a CLIP whose image tower is a ViT: detection reads the ViT's
patch tokens (each multiplied by the class token, then layer-normed), predicts one box per patch
(an MLP plus a bias that centres it on the patch) and scores it against text-query embeddings
(cosine, then a learned per-patch shift and scale). Everything here is written with transformers'
``OwlViTForObjectDetection`` and saved with ``save_pretrained``, so the toy detector loads through
the normal ``hf:`` path (the spec ``toy-owlvit`` once a trained detector ships). Its towers are also written as a
transformers ``CLIPModel`` (shipped as ``toy-vit``): OWL-ViT's towers *are* CLIP's, parameter for parameter
(only a few names differ), so the dense pixel-text methods have a trained ViT to work on.

The tokenizer is the real CLIP BPE (derived from open_clip's copy, identical ids), padded with
``"!"`` to 16 tokens as OWL-ViT's own processor does; the text tower pools at the highest token id,
which is the end-of-text token.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import torch

from vlserve.toyworld.model import PREPROCESS_CFG

ASSETS = Path(__file__).resolve().parent.parent / "assets"
TOY_OWLVIT_DIR = ASSETS / "toy_owlvit"
TOY_VIT_DIR = ASSETS / "toy_vit"
IMAGE_SIZE = 96
PATCH = 12
MAX_TOKENS = 16
OWL_CFG: dict[str, Any] = {
    "text_config": {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 4,
                    "max_position_embeddings": MAX_TOKENS, "vocab_size": 49408, "hidden_act": "gelu"},
    "vision_config": {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 4,
                      "image_size": IMAGE_SIZE, "patch_size": PATCH},
    "projection_dim": 128,  # OWL-ViT's class head maps patches to the text width: the two must match
}
MEAN = tuple(PREPROCESS_CFG["mean"])  # the toy dual encoder's (CLIP's)
STD = tuple(PREPROCESS_CFG["std"])


def write_clip_tokenizer(dir_: Path, **kwargs: Any) -> Any:
    """A transformers ``CLIPTokenizer`` derived from open_clip's BPE file (identical ids), saved in ``dir_``."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    dir_.mkdir(parents=True, exist_ok=True)
    with gzip.open(default_bpe()) as f:
        merges = f.read().decode().split("\n")[1:49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (dir_ / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (dir_ / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = CLIPTokenizer(str(dir_ / "vocab.json"), str(dir_ / "merges.txt"), **kwargs)
    tok.save_pretrained(dir_)
    return tok


def build_detector(seed: int = 0) -> Any:
    """A random toy OWL-ViT whose heads start where detection training can move them.

    transformers initialises the class and box heads with unit-variance weights, which for freshly
    drawn towers puts the box MLP's output in the thousands (every box saturates at the image
    corner, and the sigmoid passes no gradient) and the class logits in the hundreds. Here the heads
    are reset DETR-style instead: hidden layers at fan-in scale, the box head's last layer at zero so
    every patch starts with the prior box that transformers' box bias centres on it, and the logit
    shift/scale starting from constants (scores begin low, as focal-loss training wants; see below)."""
    from transformers import OwlViTConfig, OwlViTForObjectDetection

    torch.manual_seed(seed)
    model = OwlViTForObjectDetection(OwlViTConfig(**OWL_CFG))
    with torch.no_grad():
        for layer in (model.box_head.dense0, model.box_head.dense1, model.class_head.dense0):
            torch.nn.init.normal_(layer.weight, std=layer.in_features ** -0.5)
            torch.nn.init.zeros_(layer.bias)
        torch.nn.init.zeros_(model.box_head.dense2.weight)
        torch.nn.init.zeros_(model.box_head.dense2.bias)
        # logits = (cos + shift) * (elu(scale) + 1): a scale of 10 lets query cosines that differ by
        # 0.1 differ by 1 in logit from the start (Adam moves a bias by about the learning rate per
        # step, so a scale starting at 2 stays too flat to tell queries apart for thousands of steps);
        # the shift puts the first logits near -5 (focal loss's low prior)
        for layer, bias in ((model.class_head.logit_shift, -0.5), (model.class_head.logit_scale, 9.0)):
            torch.nn.init.normal_(layer.weight, std=0.01)
            torch.nn.init.constant_(layer.bias, bias)
    return model


def load_clip_towers(model: Any, folder: Path) -> dict[str, Any]:
    """Put the towers of a ``save_clip_towers`` folder back into an OWL-ViT detector; returns the
    folder's training record (``vlserve_train.json``)."""
    from safetensors.torch import load_file

    state = {}
    for name, t in load_file(str(folder / "model.safetensors")).items():
        for owl_name, clip_name in _CLIP_NAMES.items():
            name = name.replace(clip_name, owl_name)
        state[name] = t.float()
    missing, unexpected = model.owlvit.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(f"{folder}: not the toy OWL-ViT towers (missing {missing[:3]}, unexpected {unexpected[:3]})")
    record = folder / "vlserve_train.json"
    return json.loads(record.read_text()) if record.is_file() else {}


def owl_processor(dir_: Path) -> Any:
    """OWL-ViT's processor at the toy input size: square resize (no crop), CLIP mean/std, "!" padding."""
    from transformers import OwlViTImageProcessor, OwlViTProcessor

    tok = write_clip_tokenizer(dir_, pad_token="!", model_max_length=MAX_TOKENS)
    images = OwlViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                                  crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, do_center_crop=False,
                                  image_mean=list(MEAN), image_std=list(STD))
    return OwlViTProcessor(image_processor=images, tokenizer=tok)


def save_detector(model: Any, out: Path, extra: dict[str, Any] | None = None) -> Path:
    """``save_pretrained`` in fp16 (the committed size budget) with the processor next to it."""
    out.mkdir(parents=True, exist_ok=True)
    model.to(torch.float16).save_pretrained(out)
    model.to(torch.float32)
    owl_processor(out).save_pretrained(out)
    if extra:
        (out / "vlserve_train.json").write_text(json.dumps(extra, indent=2) + "\n")
    return out


def text_tower_from_open_clip(model: Any, folder: Path) -> dict[str, Any]:
    """Copy the text tower of the embedded toy CLIP (open_clip local-dir, ``folder``) into an OWL-ViT's.

    The toy CLIP's text transformer has OWL-ViT's text shape (width 128, 4 layers, 4 heads, MLP 512,
    exact GELU, causal attention, pooled at the end-of-text token, projection without bias), so
    the copy is exact: open_clip's fused ``in_proj`` splits into q/k/v, its projection matrix is
    transposed into a ``Linear``, and the first 16 of its 32 positions are kept (OWL-ViT's query
    length). Returns the source's identity for the training record."""
    import hashlib

    from safetensors.torch import load_file

    path = folder / "open_clip_model.safetensors"
    src = {k: v.float() for k, v in load_file(str(path)).items() if not k.startswith("visual.")}
    w = OWL_CFG["text_config"]["hidden_size"]
    state = {"embeddings.token_embedding.weight": src["token_embedding.weight"],
             "embeddings.position_embedding.weight": src["positional_embedding"][:MAX_TOKENS],
             "final_layer_norm.weight": src["ln_final.weight"], "final_layer_norm.bias": src["ln_final.bias"]}
    for i in range(OWL_CFG["text_config"]["num_hidden_layers"]):
        a, b = f"transformer.resblocks.{i}.", f"encoder.layers.{i}."
        qkv_w, qkv_b = src[a + "attn.in_proj_weight"], src[a + "attn.in_proj_bias"]
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            state[b + f"self_attn.{name}.weight"] = qkv_w[j * w:(j + 1) * w]
            state[b + f"self_attn.{name}.bias"] = qkv_b[j * w:(j + 1) * w]
        for ours, theirs in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"),
                             ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
            state[b + ours + ".weight"] = src[a + theirs + ".weight"]
            state[b + ours + ".bias"] = src[a + theirs + ".bias"]
    missing, unexpected = model.owlvit.text_model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(f"{folder}: text tower does not map onto the toy OWL-ViT's ({missing[:3]}, {unexpected[:3]})")
    with torch.no_grad():
        model.owlvit.text_projection.weight.copy_(src["text_projection"].T)
        model.owlvit.logit_scale.copy_(src["logit_scale"])
    return {"folder": str(folder), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16]}


# OWL-ViT tower parameter name -> CLIP's (everything else is spelled the same)
_CLIP_NAMES = {"vision_model.pre_layernorm.": "vision_model.pre_layrnorm."}


def clip_state_dict(owl_model: Any) -> dict[str, torch.Tensor]:
    """The towers of an ``OwlViTModel`` (or the ``.owlvit`` of a detector) under ``CLIPModel`` names."""
    out = {}
    for name, t in owl_model.state_dict().items():
        for old, new in _CLIP_NAMES.items():
            name = name.replace(old, new)
        out[name] = t
    return out


def clip_from_owl(owl_model: Any) -> Any:
    """A transformers ``CLIPModel`` holding the towers of an ``OwlViTModel`` (same weights, same dtype)."""
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(text_config=dict(OWL_CFG["text_config"], eos_token_id=49407, pad_token_id=0,
                                      bos_token_id=49406),
                     vision_config=OWL_CFG["vision_config"], projection_dim=OWL_CFG["projection_dim"])
    clip = CLIPModel(cfg)
    missing, unexpected = clip.load_state_dict(clip_state_dict(owl_model), strict=False)
    missing = [m for m in missing if not m.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(f"OWL-ViT towers do not map onto CLIP: missing {missing}, unexpected {unexpected}")
    return clip.eval()


def save_clip_towers(owl_model: Any, out: Path, extra: dict[str, Any] | None = None) -> Path:
    """Write OWL-ViT's contrastive towers as a transformers ``CLIPModel`` folder (fp16) with its processor."""
    from transformers import CLIPImageProcessor

    out.mkdir(parents=True, exist_ok=True)
    clip_from_owl(owl_model).to(torch.float16).save_pretrained(out)
    write_clip_tokenizer(out, pad_token="!", model_max_length=MAX_TOKENS)
    CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                       image_mean=list(MEAN), image_std=list(STD)).save_pretrained(out)
    if extra:
        (out / "vlserve_train.json").write_text(json.dumps(extra, indent=2) + "\n")
    return out
