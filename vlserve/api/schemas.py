"""Request and response schemas (pydantic v2): the product's contract over HTTP and in Python.

Images travel as base64 strings of encoded bytes. Lists are bounded so one request cannot ask for
unbounded work; limits that depend on the deployment (``VLSERVE_MAX_LABELS``...) are checked by
the engine. ``detect`` and ``segment`` are the shapes the detection and pixel-text engines answer.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_ITEMS = 256  # images or texts per request
MAX_LABELS = 10_000
MAX_QUERIES = 64

Base64Image = Annotated[str, Field(min_length=1, description="encoded image bytes (JPEG, PNG...), base64")]
Dimensions = Annotated[int | None, Field(ge=1, description="Matryoshka truncation, re-normalised; default: full")]


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(Schema):
    """What a transport answers for a vlserve error (see docs/errors.md)."""

    error: str = Field(description="the error type's stable code, e.g. invalid_input")
    message: str
    field: str | None = Field(None, description="the input or parameter at fault")
    item: int | None = Field(None, ge=0, description="position of the bad item in its list")

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"error": "invalid_input", "message": "not a decodable image (12 bytes, unknown format)",
         "field": "image", "item": 0}]})


# ---- embed --------------------------------------------------------------------------------------
class EmbedRequest(Schema):
    images: list[Base64Image] = Field(default_factory=list, max_length=MAX_ITEMS)
    texts: list[str] = Field(default_factory=list, max_length=MAX_ITEMS)
    dimensions: Dimensions = None
    model: str | None = Field(None, description="model spec; default: the deployment's")

    model_config = ConfigDict(json_schema_extra={"examples": [{"texts": ["a red circle"], "dimensions": 64}]})


class EmbedResponse(Schema):
    model: str
    fingerprint: str
    dimensions: int
    image_embeddings: list[list[float]] = Field(default_factory=list)
    text_embeddings: list[list[float]] = Field(default_factory=list)


# ---- classify -----------------------------------------------------------------------------------
class ClassifyRequest(Schema):
    """Exactly one of ``labels``, ``descriptors`` or ``head`` names the label set."""

    images: list[Base64Image] = Field(min_length=1, max_length=MAX_ITEMS)
    labels: list[str] | None = Field(None, min_length=1, max_length=MAX_LABELS)
    templates: list[str] | None = Field(None, description="prompt templates with {} (with labels)")
    descriptors: dict[str, list[str]] | None = Field(None, description="{class: [descriptor, ...]}")
    head: str | None = Field(None, description="a registered head's name")
    top_k: int = Field(5, ge=1, le=MAX_LABELS)
    multi_label: bool | None = Field(None, description="default: the model family's own rule")
    abstain_threshold: float | None = Field(None, ge=0.0, le=1.0)
    dimensions: Dimensions = None

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"images": ["iVBORw0KGgo..."], "labels": ["cat", "dog"], "top_k": 2}]})


class DescriptorScore(Schema):
    descriptor: str
    similarity: float


class LabelScore(Schema):
    label: str
    score: float
    cosine: float
    logit: float
    explanation: list[DescriptorScore] | None = None


class Classification(Schema):
    labels: list[LabelScore]
    rule: str
    multi_label: bool
    abstained: bool


class ClassifyResponse(Schema):
    model: str
    fingerprint: str
    results: list[Classification]


# ---- rank (texts against images, or images against a text) --------------------------------------
class RankRequest(Schema):
    query: str | Base64Image = Field(description="a text, or an image when query_kind is image")
    query_kind: Literal["text", "image"] = "text"
    candidates: list[str] = Field(min_length=1, max_length=MAX_ITEMS,
                                  description="texts, or base64 images when the query is a text")
    top_k: int | None = Field(None, ge=1)
    dimensions: Dimensions = None


class Ranked(Schema):
    index: int = Field(ge=0, description="position in candidates")
    score: float


class RankResponse(Schema):
    model: str
    ranking: list[Ranked]


# ---- search (an index) --------------------------------------------------------------------------
class SearchRequest(Schema):
    """Exactly one of ``texts``, ``images``, ``embeddings`` or ``ids`` gives the queries."""

    index: str
    texts: list[str] | None = Field(None, min_length=1, max_length=MAX_QUERIES)
    images: list[Base64Image] | None = Field(None, min_length=1, max_length=MAX_QUERIES)
    embeddings: list[list[float]] | None = Field(None, min_length=1, max_length=MAX_QUERIES)
    ids: list[int] | None = Field(None, min_length=1, max_length=MAX_QUERIES)
    fingerprint: str | None = Field(None, description="model fingerprint of the embeddings (checked)")
    k: int = Field(10, ge=1, le=10_000)
    offset: int = Field(0, ge=0)
    dimensions: Dimensions = None
    where: list[str] = Field(default_factory=list, description="metadata filters FIELD=VALUE (also != < <= > >=)")
    target: Literal["images", "texts"] = "images"


class SearchHit(Schema):
    rank: int
    id: int
    score: float
    source: str
    caption: str | None = Field(None, description="images: the first caption; texts: the caption matched")
    item_id: int | None = Field(None, description="texts: the image the caption belongs to")
    meta: dict[str, Any] = Field(default_factory=dict)


class SearchPage(Schema):
    query: str
    k: int
    offset: int
    next_offset: int | None
    hits: list[SearchHit]


class SearchResponse(Schema):
    index: str
    model: str
    target: Literal["images", "texts"]
    count: int
    results: list[SearchPage]


# ---- detect (text- or image-queried boxes) ------------------------------------------------------
class DetectRequest(Schema):
    """Exactly one of ``queries`` (texts) or ``query_images`` (example images, each optionally with a
    box around the object in it). Options as the Triton ``detector`` model's (docs/serving.md)."""

    images: list[Base64Image] = Field(min_length=1, max_length=MAX_ITEMS)
    queries: list[str] | None = Field(None, min_length=1, max_length=MAX_QUERIES,
                                      description="text queries; each at most 16 tokens")
    query_images: list[Base64Image] | None = Field(None, min_length=1, max_length=MAX_QUERIES)
    query_boxes: list[tuple[float, float, float, float] | None] | None = Field(
        None, max_length=MAX_QUERIES, description="one x0, y0, x1, y1 pixel box per query image (null: the "
                                                  "whole image)")
    threshold: float = Field(0.1, ge=0.0, le=1.0, description="keep boxes scoring above this")
    nms_iou: float = Field(0.3, ge=0.0, le=1.0, description="per-query NMS IoU; 1 turns NMS off")
    top_k: int = Field(100, ge=1, le=1000, description="boxes returned per image")
    model: str | None = Field(None, description="detector spec; default: the deployment's")

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"images": ["iVBORw0KGgo..."], "queries": ["a red star", "a blue circle"], "threshold": 0.2}]})


class Box(Schema):
    box_xyxy: tuple[float, float, float, float] = Field(description="pixels of the input image, not clipped")
    query: int = Field(ge=0, description="index of the matching query")
    label: str = Field(description="the query text, or 'image query N'")
    score: float = Field(description="sigmoid of the box's best class logit")
    relative_score: float | None = Field(None, description="image queries: score relative to the query's best box")


class ImageBoxes(Schema):
    height: int
    width: int
    boxes: list[Box] = Field(description="best first")


class DetectResponse(Schema):
    model: str
    fingerprint: str
    results: list[ImageBoxes] = Field(description="one entry per image")


# ---- segment (pixel-text maps) ------------------------------------------------------------------
class SegmentRequest(Schema):
    images: list[Base64Image] = Field(min_length=1, max_length=MAX_ITEMS)
    labels: list[str] = Field(min_length=1, max_length=MAX_LABELS)
    background: str | None = Field(None, description="label given to pixels matching no class")
    output: Literal["labels", "scores"] = Field("labels", description="an argmax map, or per-label score maps")


class SegmentMap(Schema):
    height: int
    width: int
    labels: list[str]
    mask_png: str | None = Field(None, description="argmax label indices as a base64 PNG (output=labels)")
    scores: list[list[list[float]]] | None = Field(None, description="[label][row][col] (output=scores)")


class SegmentResponse(Schema):
    model: str
    results: list[SegmentMap]
