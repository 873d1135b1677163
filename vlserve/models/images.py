"""Image inputs: encoded bytes, PIL images or numpy arrays, decoded safely into RGB PIL images.

* EXIF orientation is applied (``ImageOps.exif_transpose``), as a viewer would show the photo.
  The reference libraries' documented path (``Image.open`` + their transform) does not, so a phone
  photo stored sideways would be embedded sideways.
* Transparency is composited on white (as transformers' ``convert_to_rgb`` does); open_clip's
  ``convert("RGB")`` would instead expose the colour stored under transparent pixels.
* Greyscale and palette images become RGB before any resizing (open_clip's transform resizes a
  palette image's indices with nearest-neighbour before converting).
* 16-bit greyscale (PIL modes ``I;16*`` / ``I``) is scaled to 8 bits (``round(v / 257)``);
  PIL's own ``convert("RGB")`` clips every value above 255, turning most such images white.
* The pixel count declared in the header is checked *before* decoding, so a decompression bomb
  (a tiny file that claims 100k x 100k pixels) is refused without allocating anything.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vlserve.errors import InvalidInput
from vlserve.settings import DEFAULT_MAX_PIXELS

ImageInput = Any  # bytes | bytearray | memoryview | PIL.Image.Image | np.ndarray


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I;16") or img.mode == "I":
        wide = np.asarray(img, dtype=np.float64).clip(0, 65535)
        return Image.fromarray(np.round(wide / 257).astype(np.uint8), "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")


def decode_image(data: ImageInput, index: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Turn one input into an RGB PIL image, or raise :class:`InvalidInput` for item ``index``
    (``field="image"``, ``item=index``)."""
    try:
        return _decode(data, max_pixels)
    except InvalidInput as e:
        e.field, e.item = "image", index
        raise


def _decode(data: ImageInput, max_pixels: int) -> Image.Image:
    if isinstance(data, Image.Image):
        if data.width * data.height > max_pixels:
            raise InvalidInput(f"{data.width}x{data.height} exceeds the {max_pixels}-pixel limit")
        return _to_rgb(ImageOps.exif_transpose(data) or data)
    if isinstance(data, np.ndarray):
        return _from_array(data, max_pixels)
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        if not raw:
            raise InvalidInput("empty (0 bytes)")
        try:
            img = Image.open(io.BytesIO(raw))  # reads the header only
        except Image.DecompressionBombError as e:  # PIL's own hard limit, hit while reading the header
            raise InvalidInput(f"declared size exceeds the pixel limit ({e}; refused before decoding)"
                               ) from None
        except UnidentifiedImageError:
            raise InvalidInput(f"not a decodable image ({len(raw)} bytes, unknown format)") from None
        except (OSError, ValueError) as e:
            raise InvalidInput(f"cannot read image header ({e})") from None
        w, h = img.size
        if w * h > max_pixels:
            raise InvalidInput(f"declared size {w}x{h} exceeds the {max_pixels}-pixel limit "
                               "(refused before decoding)")
        try:
            img.load()
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise InvalidInput(f"corrupt or truncated {img.format or 'image'} data ({e})") from None
        return _to_rgb(ImageOps.exif_transpose(img) or img)
    raise InvalidInput(f"unsupported input type {type(data).__name__} "
                       "(expected encoded bytes, a PIL image or a uint8 numpy array)")


def _from_array(arr: np.ndarray, max_pixels: int) -> Image.Image:
    if arr.dtype != np.uint8:
        raise InvalidInput(f"numpy images must be uint8, got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise InvalidInput(f"expected an HxWxC array with C in (1, 3, 4), got shape {arr.shape}")
    h, w = arr.shape[:2]
    if h == 0 or w == 0:
        raise InvalidInput(f"empty array of shape {arr.shape}")
    if h * w > max_pixels:
        raise InvalidInput(f"{w}x{h} exceeds the {max_pixels}-pixel limit")
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
    return _to_rgb(Image.fromarray(np.ascontiguousarray(arr if mode != "L" else arr[..., 0]), mode))


def decode_images(items: list[ImageInput], max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Image.Image]:
    if not items:
        raise InvalidInput("no images given (empty list)")
    return [decode_image(x, i, max_pixels) for i, x in enumerate(items)]
