"""Request and response schemas (pydantic v2): the HTTP gateway's contract, and its OpenAPI document.

Images travel as base64 of the encoded bytes, as data URIs (``data:image/png;base64,...``) or, when
the deployment turns URL fetching on, as http(s) URLs. Lists are bounded here so no request can ask
for unbounded work; the deployment's own, usually tighter, limits (``VLSERVE_MAX_*``, see
docs/serving.md) are checked by the gateway with a message that names the setting.
``/v1/embeddings`` follows OpenAI's embeddings API, so the official SDK works against it unchanged.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_INPUTS = 2048  # /v1/embeddings inputs (OpenAI's own bound)
MAX_ITEMS = 256  # images or texts per request
MAX_LABELS = 10_000
MAX_QUERIES = 64
MAX_K = 10_000

ImageRef = Annotated[str, Field(min_length=1, description="an encoded image (JPEG, PNG, WebP...): base64, a data URI "
                                                          "(data:image/png;base64,...), or an http(s) URL when the "
                                                          "deployment fetches URLs (VLSERVE_URL_FETCH)")]
Dimensions = Annotated[int | None, Field(ge=1, description="Matryoshka truncation, re-normalised: one of the model's "
                                                           "allowed_dimensions (GET /v1/models); default: full")]
ModelName = Annotated[str | None, Field(description="a deployed model's id (GET /v1/models); default: the "
                                                    "deployment's default model")]
TINY_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAEklEQVR4nGP8z4AdMOEQH6QSAM1BAQ/oQeJvAAAAAElFTkSuQmCC"


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- errors -------------------------------------------------------------------------------------
class ErrorDetail(Schema):
    type: str = Field(description="the error type's stable code (docs/errors.md), e.g. invalid_input")
    message: str
    param: str | None = Field(None, description="the input or parameter at fault")
    item: int | None = Field(None, ge=0, description="position of the bad item in its list")


class ErrorBody(Schema):
    """Every error answer (OpenAI's shape): the type, a message naming the problem, the parameter."""

    error: ErrorDetail

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"error": {"type": "invalid_input", "message": "input 1: not a decodable image (12 bytes, unknown format)",
                   "param": "input", "item": 1}}]})


# ---- embeddings (OpenAI-compatible) -------------------------------------------------------------
class EmbeddingsRequest(Schema):
    """OpenAI's embeddings request. A string that is a data URI (or, with URL fetching on, an http(s)
    URL) is embedded as an image, any other string as a text; token-id arrays are not supported."""

    model: str = Field(description="a deployed model's id (GET /v1/models)")
    input: str | Annotated[list[str], Field(max_length=MAX_INPUTS)] | list[int] | list[list[int]]
    dimensions: int | None = Field(None, ge=1, description="Matryoshka truncation: one of the model's "
                                                            "allowed_dimensions")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="base64: each embedding as base64 of its little-endian float32 bytes")
    user: str | None = Field(None, description="accepted for compatibility, unused")

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "toy", "input": ["a red star", f"data:image/png;base64,{TINY_PNG}"], "dimensions": 32}]})


class Embedding(Schema):
    object: Literal["embedding"] = "embedding"
    index: int = Field(ge=0)
    embedding: list[float] | str = Field(description="L2-normalised float32 (a list, or base64 of the bytes)")


class Usage(Schema):
    prompt_tokens: int = Field(ge=0, description="an estimate: words and punctuation of the texts, 1 per image")
    total_tokens: int = Field(ge=0)


class EmbeddingsResponse(Schema):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


# ---- classify -----------------------------------------------------------------------------------
class ClassifyRequest(Schema):
    """Exactly one of ``labels`` (with optional ``templates``), ``descriptors`` or ``head``."""

    model: ModelName = None
    images: list[ImageRef] = Field(min_length=1, max_length=MAX_ITEMS)
    labels: list[str] | None = Field(None, min_length=1, max_length=MAX_LABELS)
    templates: list[str] | None = Field(None, min_length=1, max_length=MAX_ITEMS,
                                        description="prompt templates with {}, or one set name: openai, simple, "
                                                    "photo (with labels)")
    descriptors: dict[str, list[str]] | None = Field(None, description="{class: [descriptor, ...]}: classification "
                                                                       "by description (Menon & Vondrick)")
    head: str | None = Field(None, description="a registered head's name")
    top_k: int = Field(5, ge=1, le=MAX_LABELS)
    multi_label: bool | None = Field(None, description="independent sigmoids (SigLIP); default: the family's rule")
    abstain_threshold: float | None = Field(None, ge=0.0, le=1.0, description="flag a top score below this")
    dimensions: Dimensions = None

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"images": [TINY_PNG], "labels": ["star", "circle", "square"], "top_k": 2},
        {"images": [TINY_PNG], "descriptors": {"blicket": ["red color", "a star"], "dax": ["a blue circle"]}}]})


class ClassifyForm(Schema):
    """``POST /v1/classify`` as multipart/form-data (``curl -F image=@cat.jpg -F labels=cat,dog``)."""

    image: list[bytes] = Field(description="image files (repeat the field for several)")
    labels: list[str] | None = Field(None, description="labels, comma-separated and/or repeated")
    templates: list[str] | None = Field(None, description="prompt templates with {} (repeated)")
    descriptors: str | None = Field(None, description="JSON {class: [descriptor, ...]}")
    head: str | None = None
    top_k: int | None = Field(None, ge=1, le=MAX_LABELS)
    multi_label: bool | None = None
    abstain_threshold: float | None = Field(None, ge=0.0, le=1.0)
    dimensions: int | None = Field(None, ge=1)
    model: str | None = None


class DescriptorScore(Schema):
    descriptor: str
    similarity: float


class LabelScore(Schema):
    label: str
    score: float = Field(description="by the model family's rule (see rule)")
    explanation: list[DescriptorScore] | None = Field(None, description="descriptors, most similar first")


class Classification(Schema):
    labels: list[LabelScore] = Field(description="top-k, best first")
    rule: str = Field(description="the scoring rule applied, e.g. softmax(exp(logit_scale) * cos)")
    multi_label: bool
    abstained: bool


class ClassifyResponse(Schema):
    model: str
    fingerprint: str
    results: list[Classification] = Field(description="one per image, in order")


# ---- rank (one image against texts, or one text against images) --------------------------------
class RankRequest(Schema):
    """A query ``text`` with candidate ``images``, or a query ``image`` with candidate ``texts``."""

    model: ModelName = None
    text: str | None = Field(None, description="the query text (candidates: images)")
    image: ImageRef | None = Field(None, description="the query image (candidates: texts)")
    texts: list[str] | None = Field(None, min_length=1, max_length=MAX_ITEMS)
    images: list[ImageRef] | None = Field(None, min_length=1, max_length=MAX_ITEMS)
    top_k: int | None = Field(None, ge=1, le=MAX_ITEMS, description="default: every candidate")
    dimensions: Dimensions = None

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"image": TINY_PNG, "texts": ["a red star", "a blue circle"]}]})


class Ranked(Schema):
    index: int = Field(ge=0, description="position in the candidates")
    score: float = Field(description="cosine similarity")


class RankResponse(Schema):
    model: str
    fingerprint: str
    ranking: list[Ranked] = Field(description="best first")


# ---- search (an index) --------------------------------------------------------------------------
class SearchRequest(Schema):
    """Exactly one of ``texts``, ``images``, ``embeddings`` or ``ids`` gives the queries."""

    index: str = Field(description="an index name (GET /v1/indexes)")
    model: ModelName = Field(None, description="the model that embeds texts and images; it must be the index's "
                                               "(default: the deployed model with the index's fingerprint)")
    texts: list[str] | None = Field(None, min_length=1, max_length=MAX_QUERIES)
    images: list[ImageRef] | None = Field(None, min_length=1, max_length=MAX_QUERIES)
    embeddings: list[list[float]] | None = Field(None, min_length=1, max_length=MAX_QUERIES)
    ids: list[int] | None = Field(None, min_length=1, max_length=MAX_QUERIES, description="indexed items as queries")
    fingerprint: str | None = Field(None, description="model fingerprint of the embeddings (checked)")
    k: int = Field(10, ge=1, le=MAX_K)
    offset: int = Field(0, ge=0, le=100_000)
    dimensions: Dimensions = None
    where: list[str] = Field(default_factory=list, max_length=16,
                             description="metadata filters FIELD=VALUE (also != < <= > >=)")
    target: Literal["images", "texts"] = Field("images", description="texts: the indexed captions")

    model_config = ConfigDict(json_schema_extra={"examples": [{"index": "toyworld", "texts": ["a red star"], "k": 5}]})


class SearchForm(Schema):
    """``POST /v1/search`` as multipart/form-data (``curl -F index=toyworld -F image=@query.jpg``)."""

    index: str
    image: list[bytes] | None = Field(None, description="query image files")
    text: list[str] | None = Field(None, description="query texts (repeated)")
    k: int | None = Field(None, ge=1, le=MAX_K)
    offset: int | None = Field(None, ge=0, le=100_000)
    dimensions: int | None = Field(None, ge=1)
    where: list[str] | None = Field(None, description="metadata filters (repeated)")
    target: Literal["images", "texts"] | None = None
    model: str | None = None


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
    fingerprint: str
    target: Literal["images", "texts"]
    count: int
    results: list[SearchPage]


# ---- detect (text- or image-queried boxes) ------------------------------------------------------
class DetectRequest(Schema):
    """Exactly one of ``queries`` (texts) or ``query_images`` (example images, each optionally with a
    box around the object in it). Options as the Triton ``detector`` model's (docs/serving.md)."""

    model: ModelName = None
    images: list[ImageRef] = Field(min_length=1, max_length=MAX_ITEMS)
    queries: list[str] | None = Field(None, min_length=1, max_length=MAX_QUERIES,
                                      description="text queries; each at most 16 tokens")
    query_images: list[ImageRef] | None = Field(None, min_length=1, max_length=MAX_QUERIES)
    query_boxes: list[tuple[float, float, float, float] | None] | None = Field(
        None, max_length=MAX_QUERIES, description="one x0, y0, x1, y1 pixel box per query image (null: the "
                                                  "whole image)")
    threshold: float = Field(0.1, ge=0.0, le=1.0, description="keep boxes scoring above this")
    nms_iou: float = Field(0.3, ge=0.0, le=1.0, description="per-query NMS IoU; 1 turns NMS off")
    top_k: int = Field(100, ge=1, le=1000, description="boxes returned per image")

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
    fingerprint: str | None = None
    results: list[ImageBoxes] = Field(description="one entry per image")


# ---- segment (pixel-text maps) ------------------------------------------------------------------
class SegmentRequest(Schema):
    model: ModelName = None
    images: list[ImageRef] = Field(min_length=1, max_length=MAX_ITEMS)
    labels: list[str] = Field(min_length=1, max_length=MAX_LABELS, examples=[["star", "circle"]])
    method: Literal["vanilla", "maskclip", "sclip", "clearclip", "denseclip"] | None = Field(
        None, description="default: denseclip where the model has a DenseCLIP head, else maskclip")
    background_threshold: float | None = Field(None, ge=-1.0, le=1.0,
                                               description="pixels whose best score is under this are background")
    output_side: int | None = Field(None, ge=1, le=512, description="longer side of the mask (default and most: 512; "
                                                                    "never larger than the image)")
    stride: int | None = Field(None, ge=1, description="sliding windows every `stride` pixels (training-free methods)")
    heatmaps: bool = Field(False, description="also return each label's score map as an 8-bit PNG (heatmaps_png)")


class SegmentMap(Schema):
    height: int = Field(description="the mask's height (the image's aspect, at most 512 on the longer side)")
    width: int
    image_height: int
    image_width: int
    labels: list[str]
    method: str = Field(description="the method applied")
    pixel_share: dict[str, float] = Field(description="each label's share of the mask's pixels")
    mask_png: str = Field(description="base64 PNG: 0 background, i + 1 where label i won (8-bit; 16-bit past 254 "
                                      "labels)")
    heatmaps_png: list[str] | None = Field(None, description="with heatmaps: one base64 8-bit PNG per label, its "
                                                             "scores scaled linearly from score_range[0] (0) to "
                                                             "score_range[1] (255), the same range for every label")
    score_range: tuple[float, float] | None = Field(None, description="with heatmaps: the lowest and highest score "
                                                                      "over all labels' maps")


class SegmentResponse(Schema):
    model: str
    results: list[SegmentMap]


# ---- the deployment -----------------------------------------------------------------------------
class ModelCard(Schema):
    """A deployed model (OpenAI's model object, plus what vlserve knows about it)."""

    id: str = Field(description="its spec string; the `model` of requests")
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "vlserve"
    family: str = Field(description="clip | siglip | align")
    fingerprint: str = Field(description="spec + weights hash; an index built with another refuses its queries")
    dimensions: int = Field(description="full embedding width")
    matryoshka_dimensions: list[int] | None = Field(description="nested prefixes the model was trained with")
    allowed_dimensions: list[int] = Field(description="values `dimensions` may take (the Matryoshka prefixes, or "
                                                      "any width up to full)")
    scoring_rule: str
    capabilities: list[str] = Field(description="embed_text, embed_image, classify, rank, search, detect, segment")
    triton_models: list[str]


class ModelList(Schema):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class IndexCard(Schema):
    name: str
    model: str = Field(description="the spec the index was built with")
    fingerprint: str
    dimensions: int
    coarse_dimensions: int = Field(description="the Matryoshka prefix its search index scans")
    factory: str | None
    count: int
    text_count: int
    served_by: str | None = Field(description="the deployed model that can query it (same fingerprint), if any")


class IndexList(Schema):
    object: Literal["list"] = "list"
    data: list[IndexCard]
    failed: dict[str, str] = Field(default_factory=dict, description="indexes that could not be loaded, and why")


class Health(Schema):
    status: Literal["ok"] = "ok"


class Readiness(Schema):
    status: Literal["ready", "not_ready"]
    triton: bool = Field(description="Triton answers and is ready")
    models: list[str] = Field(description="deployed model ids")
    indexes_loaded: bool
    reason: str | None = None
