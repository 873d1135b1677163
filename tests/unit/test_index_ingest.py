"""The encoder stage: the weight-free preprocessor equals the model's own, decoding never raises,
captions stay aligned with their images."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch
from conftest import spec_for
from PIL import Image

from vlserve.ingest.encoder import Preprocessor, decode, encode_batch
from vlserve.ingest.reader import SourceItem
from vlserve.models import load_dual_encoder


def png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("key", ["open_clip_clip", "hf_clip", "hf_siglip"])
def test_preprocessor_is_light_picklable_and_identical(tiny_dirs, key):
    enc = load_dual_encoder(spec_for(key, tiny_dirs[key]))
    pre = Preprocessor(enc)
    blob = pickle.dumps(pre)
    assert len(blob) < len(pickle.dumps(enc.model.state_dict())) / 2  # the weights stay behind
    again = pickle.loads(blob)
    torch.testing.assert_close(again(png(0)), enc.preprocess([png(0)])[0])
    assert enc.model is not None  # the encoder itself is untouched


def test_decode_reports_unreadable_items_without_raising(tiny_dirs, tmp_path):
    enc = load_dual_encoder(spec_for("open_clip_clip", tiny_dirs["open_clip_clip"]))
    pre = Preprocessor(enc)
    good, bad = tmp_path / "g.png", tmp_path / "b.png"
    good.write_bytes(png(1))
    bad.write_bytes(png(1)[:100])
    ok = decode(SourceItem(str(good), "s", path=str(good)), 3, 7, pre)
    assert ok.ok and ok.shard == 3 and ok.pos == 7 and len(ok.digest) == 32 and ok.pixels is not None
    broken = decode(SourceItem(str(bad), "s", path=str(bad)), 0, 0, pre)
    assert not broken.ok and "corrupt or truncated" in broken.reason and broken.digest
    missing = decode(SourceItem("nope", "s", path=str(tmp_path / "nope.png")), 0, 0, pre)
    assert not missing.ok and "cannot read" in missing.reason and not missing.digest


def test_encode_batch_keeps_captions_aligned_and_matches_single_calls(tiny_dirs):
    enc = load_dual_encoder(spec_for("open_clip_clip", tiny_dirs["open_clip_clip"]))
    pixels = enc.preprocess([png(2), png(3), png(4)])
    out = encode_batch(enc, pixels, [["a cat", "a cat", "a dog"], [], ["a bird"]])
    assert [e.captions for e in out] == [["a cat", "a dog"], [], ["a bird"]]
    assert [e.text.shape[0] for e in out] == [2, 0, 1]
    np.testing.assert_allclose(out[0].text[1], enc.encode_texts(["a dog"])[0], atol=1e-5)
    np.testing.assert_allclose(out[2].image, enc.encode_images([png(4)])[0], atol=1e-5)
