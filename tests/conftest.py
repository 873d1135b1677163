from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# tests never touch the network: hub libraries read their cache only
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

import tiny_models


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny random model per family, each saved in its library's own format."""
    root = tmp_path_factory.mktemp("tiny")
    return {
        "open_clip_clip": tiny_models.save_open_clip(root / "oc_clip", tiny_models.OPEN_CLIP_TINY),
        "open_clip_siglip": tiny_models.save_open_clip(root / "oc_siglip", tiny_models.OPEN_CLIP_SIGLIP_TINY),
        "hf_clip": tiny_models.save_hf_clip(root / "hf_clip"),
        "hf_siglip": tiny_models.save_hf_siglip(root / "hf_siglip"),
        "hf_align": tiny_models.save_hf_align(root / "hf_align"),
    }


def spec_for(key: str, path: Path) -> str:
    return f"open_clip:local-dir:{path}" if key.startswith("open_clip") else f"hf:{path}"


@pytest.fixture(scope="session")
def sample_images() -> list:
    import numpy as np

    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in ((40, 50), (64, 64), (33, 90))]


@pytest.fixture(scope="session")
def tiny_owl(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny random OWL-ViT and OWLv2, each a transformers save_pretrained folder with its processor."""
    root = tmp_path_factory.mktemp("tiny_owl")
    owlvit = tiny_models.save_hf_owl(root / "owlvit", "owlvit")
    return {"owlvit": owlvit, "owlv2": tiny_models.save_hf_owl(root / "owlv2", "owlv2", seed=1, tokenizer_like=owlvit)}


@pytest.fixture(scope="session")
def detection_images() -> list:
    """Non-square RGB images (landscape, portrait, odd sizes), as uint8 arrays."""
    import numpy as np

    rng = np.random.default_rng(5)
    return [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in ((40, 70), (90, 52), (33, 47))]


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(uri, token) of a real Milvus standalone server with authentication on, for the session."""
    pytest.importorskip("milvus")
    pytest.importorskip("pymilvus")
    from servers import running_milvus

    with running_milvus(tmp_path_factory.mktemp("milvus-server")) as server:
        yield server
