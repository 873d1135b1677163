"""Image inputs: formats agree, EXIF is honoured, bad files are refused with the item named."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from conftest import spec_for
from PIL import Image

from vlserve.errors import InvalidInput
from vlserve.models import load_dual_encoder
from vlserve.models.images import decode_image


def _encode(arr: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def clip(tiny_dirs):
    return load_dual_encoder(spec_for("open_clip_clip", tiny_dirs["open_clip_clip"]))


def test_bytes_pil_and_numpy_give_the_same_embedding(clip, sample_images):
    arr = sample_images[0]
    embs = clip.encode_images([_encode(arr, "PNG"), Image.fromarray(arr), arr, _encode(arr, "WEBP", lossless=True)])
    assert (embs @ embs[0] >= 0.99999).all()


def test_jpeg_and_webp_decode(clip, sample_images):
    for fmt in ("JPEG", "WEBP"):
        assert clip.encode_images([_encode(sample_images[1], fmt)]).shape == (1, 32)


def test_exif_orientation_is_applied():
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    out = np.asarray(decode_image(buf.getvalue()))
    assert out.shape == (40, 20, 3)  # displayed portrait
    assert out[:20].mean() > 200 and out[20:].mean() < 50  # white half now on top


def test_rgba_greyscale_and_palette_become_rgb():
    rgba = np.zeros((8, 8, 4), np.uint8)  # fully transparent black -> white on composite
    assert np.asarray(decode_image(rgba)).min() == 255
    grey = np.full((8, 8), 77, np.uint8)
    assert np.asarray(decode_image(_encode(grey, "PNG"))).shape == (8, 8, 3)
    pal = Image.fromarray(np.zeros((8, 8, 3), np.uint8)).convert("P")
    assert decode_image(pal).mode == "RGB"


def _png_with_declared_size(w: int, h: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(("payload", "message"), [
    (b"", "empty (0 bytes)"),
    (b"this is a text file, not an image\n" * 10, "not a decodable image"),
    (b"\xff\xd8\xff\xe0" + b"\x13" * 300, "image 1:"),
    (_png_with_declared_size(100_000, 100_000), "refused before decoding"),
])
def test_bad_images_fail_with_the_item_named(clip, sample_images, payload, message):
    good = _encode(sample_images[0], "PNG")
    with pytest.raises(InvalidInput) as e:
        clip.encode_images([good, payload, good])
    assert "image 1" in str(e.value) and message in str(e.value)


def test_truncated_file_is_refused(clip, sample_images):
    data = _encode(sample_images[1], "JPEG")
    with pytest.raises(InvalidInput, match=r"image 0: corrupt or truncated JPEG"):
        clip.encode_images([data[: len(data) // 2]])
    png = _encode(sample_images[1], "PNG")
    with pytest.raises(InvalidInput, match=r"image 0: corrupt or truncated"):
        clip.encode_images([png[: len(png) // 2]])


def test_bad_arrays_and_empty_lists(clip):
    with pytest.raises(InvalidInput, match="uint8"):
        clip.encode_images([np.zeros((8, 8, 3), np.float32)])
    with pytest.raises(InvalidInput, match="shape"):
        clip.encode_images([np.zeros((8, 8, 5), np.uint8)])
    with pytest.raises(InvalidInput, match="no images"):
        clip.encode_images([])
    with pytest.raises(InvalidInput, match="no texts"):
        clip.encode_texts([])
    with pytest.raises(InvalidInput, match="text 1"):
        clip.encode_texts(["ok", 3])  # type: ignore[list-item]


def test_long_text_is_truncated_not_refused(clip):
    emb = clip.encode_texts(["word " * 5000])
    assert emb.shape == (1, 32) and np.isfinite(emb).all()
