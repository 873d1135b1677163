"""The Triton models' inputs and outputs, as data: the one place the tensor contract is written.

:mod:`vlserve.serving.repository` writes each ``config.pbtxt`` from :data:`TRITON_MODELS`, the
typed client builds its requests from it, and docs/serving.md's tensor table is
:func:`markdown_table` (a test checks). Dims exclude the batch dimension (``max_batch_size`` > 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Triton wire type -> (config.pbtxt data_type, numpy dtype)
DTYPES: dict[str, tuple[str, type]] = {
    "BYTES": ("TYPE_STRING", np.object_),
    "UINT8": ("TYPE_UINT8", np.uint8),
    "INT32": ("TYPE_INT32", np.int32),
    "INT64": ("TYPE_INT64", np.int64),
    "FP32": ("TYPE_FP32", np.float32),
    "FP16": ("TYPE_FP16", np.float16),
    "BOOL": ("TYPE_BOOL", np.bool_),
}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # a key of DTYPES
    dims: tuple[int, ...]
    optional: bool = False
    doc: str = ""

    @property
    def config_type(self) -> str:
        return DTYPES[self.dtype][0]

    @property
    def numpy_dtype(self) -> type:
        return DTYPES[self.dtype][1]

    def pbtxt(self) -> str:
        dims = ", ".join(str(d) for d in self.dims)
        optional = " optional: true" if self.optional else ""
        return f'  {{ name: "{self.name}" data_type: {self.config_type} dims: [ {dims} ]{optional} }}'


@dataclass(frozen=True)
class ModelIO:
    """One Triton model's tensor contract."""

    name: str
    doc: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec:
        return _named(self.inputs, name, f"{self.name} input")

    def output(self, name: str) -> TensorSpec:
        return _named(self.outputs, name, f"{self.name} output")


def _named(specs: tuple[TensorSpec, ...], name: str, what: str) -> TensorSpec:
    for s in specs:
        if s.name == name:
            return s
    raise KeyError(f"no {what} named {name!r}; known: {', '.join(s.name for s in specs)}")


IMAGE = TensorSpec("IMAGE", "BYTES", (1,), optional=True, doc="one encoded image (JPEG, PNG, WebP...)")
IMAGE_RAW = TensorSpec("IMAGE_RAW", "UINT8", (-1, -1, 3), optional=True, doc="one decoded RGB image, HxWx3")
DIMENSIONS = TensorSpec("DIMENSIONS", "INT32", (1,), optional=True,
                        doc="Matryoshka truncation (re-normalised); default: full")
EMBEDDING = TensorSpec("EMBEDDING", "FP32", (-1,), doc="L2-normalised embedding")

IMAGE_ENCODER = ModelIO(
    "image_encoder", "images -> embeddings (give IMAGE or IMAGE_RAW)",
    (IMAGE, IMAGE_RAW, DIMENSIONS), (EMBEDDING,))
TEXT_ENCODER = ModelIO(
    "text_encoder", "texts -> embeddings (over-long texts are truncated to the model's context)",
    (TensorSpec("TEXT", "BYTES", (1,), doc="one UTF-8 text"), DIMENSIONS),
    (EMBEDDING, TensorSpec("MODEL_INFO", "BYTES", (1,),
                           doc="JSON: the model's spec, fingerprint, family, embed_dim, matryoshka_dims (every row)")))
ZERO_SHOT_CLASSIFIER = ModelIO(
    "zero_shot_classifier", "one image -> top-k labels and its embedding (give one of LABELS, DESCRIPTORS, HEAD)",
    (IMAGE, IMAGE_RAW,
     TensorSpec("LABELS", "BYTES", (-1,), optional=True, doc="the label set"),
     TensorSpec("TEMPLATES", "BYTES", (-1,), optional=True, doc="prompt templates with {} (with LABELS)"),
     TensorSpec("DESCRIPTORS", "BYTES", (1,), optional=True, doc='JSON {class: [descriptor, ...]}'),
     TensorSpec("HEAD", "BYTES", (1,), optional=True, doc="a registered head's name"),
     TensorSpec("TOP_K", "INT32", (1,), optional=True, doc="labels returned (default 5)"),
     DIMENSIONS,
     TensorSpec("MULTI_LABEL", "BOOL", (1,), optional=True, doc="independent sigmoids (SigLIP only)"),
     TensorSpec("ABSTAIN_THRESHOLD", "FP32", (1,), optional=True, doc="flag a top score below this")),
    (TensorSpec("LABEL", "BYTES", (-1,), doc="top-k labels, best first"),
     TensorSpec("SCORE", "FP32", (-1,), doc="their scores"),
     EMBEDDING,
     TensorSpec("RULE", "BYTES", (1,), doc="the scoring rule applied"),
     TensorSpec("EXPLANATION", "BYTES", (1,), doc="JSON {label: [{descriptor, similarity}, ...]}"),
     TensorSpec("ABSTAINED", "BOOL", (1,), doc="top score below ABSTAIN_THRESHOLD")))

DETECTOR = ModelIO(
    "detector", "images -> boxes for text queries or example images (give QUERIES or QUERY_IMAGES); deployed "
                "only when a detector spec is configured",
    (IMAGE, IMAGE_RAW,
     TensorSpec("QUERIES", "BYTES", (-1,), optional=True, doc="text queries (the same on every row of a request)"),
     TensorSpec("QUERY_IMAGES", "BYTES", (-1,), optional=True,
                doc="encoded example images (the same on every row of a request)"),
     TensorSpec("QUERY_BOXES", "FP32", (-1, 4), optional=True,
                doc="one x0, y0, x1, y1 pixel box per query image; a row of NaN: the whole image"),
     TensorSpec("THRESHOLD", "FP32", (1,), optional=True, doc="keep boxes scoring above this (default 0.1)"),
     TensorSpec("NMS_IOU", "FP32", (1,), optional=True, doc="per-query NMS IoU (default 0.3; 1: none)"),
     TensorSpec("TOP_K", "INT32", (1,), optional=True, doc="boxes returned per image (default 100)")),
    (TensorSpec("BOXES", "FP32", (-1, 4), doc="x0, y0, x1, y1 in the image's pixels, best first (NaN past COUNT)"),
     TensorSpec("SCORES", "FP32", (-1,), doc="sigmoid scores (NaN past COUNT)"),
     TensorSpec("QUERY", "INT32", (-1,), doc="index of each box's query (-1 past COUNT)"),
     TensorSpec("RELATIVE_SCORES", "FP32", (-1,),
                doc="image queries: score relative to the query's best box (transformers' image-guided "
                    "scores); NaN for text queries"),
     TensorSpec("COUNT", "INT32", (1,), doc="number of boxes found in this image")))

PIXEL_TEXT = ModelIO(
    "pixel_text", "images + labels -> per-label score maps and a segmentation (MaskCLIP, SCLIP, ClearCLIP; "
                  "DenseCLIP where a head is deployed)",
    (IMAGE, IMAGE_RAW,
     TensorSpec("LABELS", "BYTES", (-1,), doc="the labels (the same on every row of a request; at most 256)"),
     TensorSpec("METHOD", "BYTES", (1,), optional=True,
                doc="vanilla, maskclip, sclip, clearclip or denseclip (default: denseclip with a head, else "
                    "maskclip)"),
     TensorSpec("TEMPLATES", "BYTES", (-1,), optional=True,
                doc="prompt templates with {} for the training-free methods (default: a photo of a {}.)"),
     TensorSpec("BACKGROUND_THRESHOLD", "FP32", (1,), optional=True,
                doc="pixels whose best score is under this are background (-1)"),
     TensorSpec("OUTPUT_SIDE", "INT32", (1,), optional=True,
                doc="longer side of the returned maps (default and most: 512; never larger than the image)"),
     TensorSpec("STRIDE", "INT32", (1,), optional=True,
                doc="sliding windows (training-free methods): the image's shorter side resized to twice the "
                    "tower's input, windows of the input size every STRIDE pixels, overlaps averaged")),
    (TensorSpec("SCORES", "FP16", (-1, -1, -1),
                doc="per-label score maps [L, h, w] (cosine; denseclip: probability), padded past OUTPUT_SIZE"),
     TensorSpec("SEGMENTATION", "INT32", (-1, -1), doc="best label index per pixel, -1 background or padding"),
     TensorSpec("OUTPUT_SIZE", "INT32", (2,), doc="h, w of this image's maps"),
     TensorSpec("METHOD_USED", "BYTES", (1,), doc="the method applied")))

TRITON_MODELS: dict[str, ModelIO] = {m.name: m for m in (IMAGE_ENCODER, TEXT_ENCODER, ZERO_SHOT_CLASSIFIER, DETECTOR,
                                                         PIXEL_TEXT)}
ENCODER_MODELS = (IMAGE_ENCODER.name, TEXT_ENCODER.name, ZERO_SHOT_CLASSIFIER.name,
                  PIXEL_TEXT.name)  # served for the model spec
DETECTOR_MODELS = (DETECTOR.name,)  # served for the detector spec, when one is configured


def markdown_table() -> str:
    """The tensor table of docs/serving.md, one row per tensor."""
    rows = ["| model | tensor | in/out | type | dims | optional | meaning |", "|---|---|---|---|---|---|---|"]
    for m in TRITON_MODELS.values():
        for direction, specs in (("in", m.inputs), ("out", m.outputs)):
            for s in specs:
                dims = "[" + ", ".join(str(d) for d in s.dims) + "]"
                rows.append(f"| `{m.name}` | `{s.name}` | {direction} | {s.dtype} | {dims} | "
                            f"{'yes' if s.optional else ''} | {s.doc} |")
    return "\n".join(rows)
