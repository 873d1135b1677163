"""Tiny random models of every supported family, built from configs and saved in each library's
own format (no downloads). Used to prove vlserve's loaders match the reference libraries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from vlserve.toyworld.owl import write_clip_tokenizer

OPEN_CLIP_TINY: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
# SigLIP-style: a logit bias, bidirectional text attention pooled at the last token, projection bias
OPEN_CLIP_SIGLIP_TINY: dict[str, Any] = {
    "embed_dim": 32,
    "init_logit_bias": -10,
    "custom_text": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2,
                 "no_causal_mask": True, "proj_bias": True, "pool_type": "last"},
}


def save_open_clip(dir_: Path, cfg: dict[str, Any], seed: int = 0) -> Path:
    from open_clip.model import CLIP, CustomTextCLIP

    from vlserve.toyworld.model import save_open_clip_dir

    torch.manual_seed(seed)
    cls = CustomTextCLIP if cfg.get("custom_text") else CLIP
    model = cls(**{k: v for k, v in cfg.items() if k != "custom_text"})
    if cfg.get("init_logit_bias") is not None:
        with torch.no_grad():
            model.logit_bias.fill_(-3.0)  # so sigmoids are not all ~0
    save_open_clip_dir(model, dir_, cfg, half=False)
    cfg_path = dir_ / "open_clip_config.json"
    conf = json.loads(cfg_path.read_text())
    conf["preprocess_cfg"] = {"size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                              "interpolation": "bicubic", "resize_mode": "shortest"}
    cfg_path.write_text(json.dumps(conf))
    return dir_


def save_hf_clip(dir_: Path, seed: int = 0) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "max_position_embeddings": 16, "vocab_size": 49408},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        projection_dim=24)
    CLIPModel(cfg).save_pretrained(dir_)
    write_clip_tokenizer(dir_, model_max_length=16)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(dir_)
    return dir_


# words for the tiny SentencePiece model: with capitalised lines ending in punctuation and non-ASCII
# letters in the corpus, the tokenizer's lower-casing and punctuation stripping have something to do
_SP_WORDS = ["a", "photo", "of", "the", "red", "blue", "green", "yellow", "star", "circle", "square", "triangle",
             "cross", "diamond", "cat", "dog", "car", "small", "big", "left", "right", "above", "below", "next",
             "to", "with", "and", "on", "in", "café", "naïve", "über", "straße", "zoë"]
SIGLIP_CONTEXT = 64  # the original SigLIP text length


def write_siglip_tokenizer(dir_: Path) -> Any:
    """A real SigLIP tokenizer: a tiny SentencePiece unigram model trained offline on a few hundred
    generated lines, wrapped in transformers' ``SiglipTokenizer`` (pad = EOS = ``</s>``)."""
    import random

    import sentencepiece as spm
    from transformers import SiglipTokenizer

    dir_.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    lines = [" ".join(rng.choice(_SP_WORDS) for _ in range(rng.randint(3, 12))) for _ in range(400)]
    lines += [line.capitalize() + rng.choice([".", "!", "?", ",", ";"]) for line in lines[:100]]
    corpus = dir_ / "sp_corpus.txt"
    corpus.write_text("\n".join(lines) + "\n")
    prefix = dir_ / "spiece"
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(prefix), vocab_size=120,
                                   hard_vocab_limit=False, pad_id=-1, eos_id=1, unk_id=0, bos_id=-1,
                                   eos_piece="</s>", unk_piece="<unk>", byte_fallback=False,
                                   minloglevel=2, num_threads=1)
    corpus.unlink()
    (dir_ / "spiece.vocab").unlink()
    tok = SiglipTokenizer(vocab_file=str(prefix) + ".model", model_max_length=SIGLIP_CONTEXT)
    tok.save_pretrained(dir_)
    return tok


def save_hf_siglip(dir_: Path, seed: int = 0) -> Path:
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

    torch.manual_seed(seed)
    tok = write_siglip_tokenizer(dir_)
    cfg = SiglipConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "max_position_embeddings": SIGLIP_CONTEXT,
                     "vocab_size": len(tok), "pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id,
                     "bos_token_id": None},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8})
    model = SiglipModel(cfg)
    with torch.no_grad():
        model.logit_bias.fill_(-2.0)
    model.save_pretrained(dir_)
    SiglipProcessor(image_processor=SiglipImageProcessor(size={"height": 32, "width": 32}),
                    tokenizer=tok).save_pretrained(dir_)
    return dir_


def save_hf_align(dir_: Path, seed: int = 0) -> Path:
    from transformers import AlignConfig, AlignModel, BertTokenizer, EfficientNetImageProcessor

    torch.manual_seed(seed)
    dir_.mkdir(parents=True, exist_ok=True)
    words = ["a", "photo", "of", "cat", "dog", "red", "star", "blue", "circle", "the", "and", "an", "image"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *"abcdefghijklmnopqrstuvwxyz"]
    (dir_ / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizer(str(dir_ / "vocab.txt"), model_max_length=20)
    tok.save_pretrained(dir_)
    cfg = AlignConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "max_position_embeddings": 20, "vocab_size": len(vocab)},
        vision_config={"image_size": 32, "width_coefficient": 0.1, "depth_coefficient": 0.1, "hidden_dim": 32},
        projection_dim=32)
    model = AlignModel(cfg)
    with torch.no_grad():  # init convs fan-in scaled: with std 0.02 a random EfficientNet's output vanishes
        for m in model.vision_model.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    model.save_pretrained(dir_)
    EfficientNetImageProcessor(size={"height": 32, "width": 32}, crop_size={"height": 32, "width": 32},
                               do_center_crop=False).save_pretrained(dir_)
    return dir_


OWL_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
            "max_position_embeddings": 16, "vocab_size": 49408}
OWL_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
              "image_size": 48, "patch_size": 8}
OWL_SIZE = 48  # 6x6 = 36 patches, so 36 predicted boxes per image


def write_owl_tokenizer(dir_: Path, like: Path | None = None) -> Any:
    """OWL-ViT's text input: the CLIP tokenizer padded to 16 tokens with "!" (id 0). ``like``: a folder
    already holding one (copied: building the BPE tokenizer takes seconds)."""
    import shutil

    from transformers import CLIPTokenizer

    if like is None:
        return write_clip_tokenizer(dir_, pad_token="!", model_max_length=16)
    dir_.mkdir(parents=True, exist_ok=True)
    for f in like.iterdir():
        if "token" in f.name or f.name in ("vocab.json", "merges.txt"):
            shutil.copy(f, dir_ / f.name)
    return CLIPTokenizer.from_pretrained(dir_, local_files_only=True)


def _small_heads(model: Any) -> None:
    """Random heads start with weight std ~1, so box sigmoids saturate and scores are exactly 0 or 1
    (ties everywhere). Class and objectness heads at std 0.02 give spread, distinct scores; the box
    head at 0.3 moves boxes off the patch grid's prior enough that some overlap (NMS has work)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "_head." in name and p.ndim > 1:
                p.normal_(0, 0.3 if name.startswith("box_head.") else 0.02)
            elif "_head." in name:
                p.zero_()


def save_hf_owl(dir_: Path, family: str = "owlvit", seed: int = 0, tokenizer_like: Path | None = None) -> Path:
    """A tiny random OWL-ViT or OWLv2 (48 px, patch 8) with its processor: OWL-ViT's stretches the
    image to 48x48, OWLv2's pads it bottom/right to a square first."""
    import transformers

    prefix = {"owlvit": "OwlViT", "owlv2": "Owlv2"}[family]
    config_cls, model_cls, image_cls, processor_cls = (getattr(transformers, f"{prefix}{kind}") for kind in
                                                       ("Config", "ForObjectDetection", "ImageProcessor", "Processor"))
    torch.manual_seed(seed)
    tok = write_owl_tokenizer(dir_, tokenizer_like)
    config = config_cls(text_config=OWL_TEXT, vision_config=OWL_VISION, projection_dim=OWL_TEXT["hidden_size"])
    model = model_cls(config)
    _small_heads(model)
    model.save_pretrained(dir_)
    size = {"height": OWL_SIZE, "width": OWL_SIZE}
    extra = {"crop_size": size} if family == "owlvit" else {}
    processor_cls(image_processor=image_cls(size=size, **extra), tokenizer=tok).save_pretrained(dir_)
    return dir_
