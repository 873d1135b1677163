"""Detection through vlserve (in-process) against transformers' own OWL-ViT / OWLv2 path: the same
boxes and scores as ``processor(...)`` + model + ``post_process_grounded_object_detection``, and as
``image_guided_detection`` + ``post_process_image_guided_detection``, on non-square images; the
query cache, batching, NMS, and every refused input."""

from __future__ import annotations

import numpy as np
import owl_reference
import pytest
import torch
from image_files import png
from owl_reference import QUERIES
from PIL import Image

from vlserve.detection import ObjectDetector
from vlserve.errors import InvalidInput, Unsupported
from vlserve.models import load_detector, load_dual_encoder
from vlserve.models.spec import _ALIASES, parse_spec, register_alias
from vlserve.models.text_cache import TextEmbeddingCache
from vlserve.settings import Runtime

FAMILIES = ["owlvit", "owlv2"]
EVERYTHING = dict(threshold=0.0, nms_iou=1.0, top_k=1000)  # every box, no NMS: transformers' text output


@pytest.fixture(scope="module")
def detectors(tiny_owl):
    return {f: ObjectDetector(load_detector(f"hf:{tiny_owl[f]}", Runtime(device="cpu"))) for f in FAMILIES}


@pytest.fixture(scope="module")
def reference(tiny_owl):
    """transformers' own processor and model for each family."""
    return {f: owl_reference.load(tiny_owl[f], f) for f in FAMILIES}


def unpack(found, attr="score"):
    return (np.array([d.box for d in found.detections]).reshape(-1, 4),
            np.array([getattr(d, attr) for d in found.detections]), [d.query for d in found.detections])


@pytest.mark.parametrize("family", FAMILIES)
def test_text_queries_match_transformers(family, detectors, reference, detection_images):
    want = owl_reference.text_detections(reference[family], detection_images, QUERIES)
    got = detectors[family].detect([png(a) for a in detection_images], QUERIES, **EVERYTHING)
    assert len(got) == len(want) == len(detection_images)
    for img, g, (w_boxes, w_scores, w_labels) in zip(detection_images, got, want, strict=True):
        assert (g.height, g.width) == img.shape[:2]
        g_boxes, g_scores, g_labels = unpack(g)
        assert len(g_scores) == len(w_scores) == 36  # one box per patch, none dropped at threshold 0
        assert np.abs(g_scores - w_scores).max() <= 1e-5
        assert np.abs(g_boxes - w_boxes).max() <= 1e-3
        assert g_labels == w_labels.tolist()
        assert [d.label for d in g.detections] == [QUERIES[q] for q in g_labels]
        assert all(d.relative_score is None for d in g.detections)
    if family == "owlv2":  # boxes live in the padded square, scaled by the longer side: some reach past the image
        assert any(d.box[3] > detection_images[0].shape[0] for d in got[0].detections)


@pytest.mark.parametrize("family", FAMILIES)
def test_image_queries_match_transformers(family, detectors, reference, detection_images):
    """One example image (non-square) against three targets (transformers takes one query per target)."""
    query = np.random.default_rng(9).integers(0, 256, (30, 44, 3), dtype=np.uint8)
    want, logits = owl_reference.image_guided_detections(reference[family], detection_images, query)
    got = detectors[family].detect([png(a) for a in detection_images], query_images=[png(query)],
                                   threshold=0.0, nms_iou=0.3, top_k=1000)
    for i, (g, (w_boxes, w_alpha)) in enumerate(zip(got, want, strict=True)):
        # transformers returns the boxes whose relative score is above 0, as its "scores"
        shown = [d for d in g.detections if d.relative_score > 0]
        assert len(shown) == len(w_alpha) > 0
        assert np.abs(np.array([d.relative_score for d in shown]) - w_alpha).max() <= 1e-5
        assert np.abs(np.array([d.box for d in shown]) - w_boxes).max() <= 1e-3
        best = torch.sigmoid(logits[i].max()).item()  # the calibrated score of the best box
        assert abs(g.detections[0].score - best) <= 1e-5
        assert {d.label for d in g.detections} == {"image query 0"}


def test_owlvit_whole_image_box_is_the_default_rule(detectors, detection_images):
    """OWL-ViT's rule without a box is the box rule with the whole image."""
    det = detectors["owlvit"]
    query = detection_images[1]
    h, w = query.shape[:2]
    a = det.queries(images=[png(query)])
    b = det.queries(images=[png(query)], boxes=[(0, 0, w, h)])
    assert a.patches == b.patches and np.allclose(a.embeddings, b.embeddings)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_query_box_picks_a_predicted_box_around_it(family, detectors, detection_images):
    from torchvision.ops import box_iou

    det = detectors[family]
    query = detection_images[0]  # 40x70
    box = (5.0, 3.0, 40.0, 30.0)
    q = det.queries(images=[png(query)], boxes=[box])
    feats = det.model.encode_images([png(query)])
    pred = det.model.to_pixels(feats.boxes[0].cpu(), feats.sizes[0])
    ious = box_iou(torch.tensor([box]), pred)[0]
    assert q.patches is not None and ious[q.patches[0]] >= 0.8 * ious.max()
    assert det.detect([png(detection_images[2])], q, threshold=0.0)[0].detections


@pytest.mark.parametrize("family", FAMILIES)
def test_nms_is_torchvision_batched_nms_per_query(family, detectors, detection_images):
    from torchvision.ops import batched_nms

    det = detectors[family]
    images = [png(a) for a in detection_images]
    raw = det.detect(images, QUERIES, **EVERYTHING)
    suppressed = 0
    for iou in (0.05, 0.15, 0.3):
        nms = det.detect(images, QUERIES, threshold=0.0, nms_iou=iou, top_k=1000)
        for r, n in zip(raw, nms, strict=True):
            boxes, scores, queries = unpack(r)
            keep = batched_nms(torch.tensor(boxes), torch.tensor(scores), torch.tensor(queries), iou).numpy()
            got_boxes, got_scores, got_queries = unpack(n)
            assert np.array_equal(got_boxes, boxes[keep]) and np.array_equal(got_scores, scores[keep])
            assert got_queries == [queries[k] for k in keep]
            suppressed += len(scores) - len(keep)
    assert suppressed > 0  # NMS had work to do


def test_threshold_and_top_k(detectors, detection_images):
    det = detectors["owlvit"]
    images = [png(a) for a in detection_images]
    raw = det.detect(images, QUERIES, **EVERYTHING)
    cut = float(np.median([d.score for d in raw[0].detections]))
    kept = det.detect(images, QUERIES, threshold=cut, nms_iou=1.0, top_k=1000)
    assert [d for d in raw[0].detections if d.score > cut] == kept[0].detections
    top = det.detect(images, QUERIES, threshold=0.0, nms_iou=1.0, top_k=5)
    assert all(t.detections == r.detections[:5] for t, r in zip(top, raw, strict=True))


class Calls:
    """Counts real forward passes of a tower (and the images or texts they carried)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls = self.items = 0
        self.handle = module.register_forward_hook(self)

    def __call__(self, module, args, output) -> None:
        self.calls += 1
        self.items += output[0].shape[0]


def test_query_cache_and_one_image_tower_pass_per_image(tiny_owl, detection_images):
    model = load_detector(f"hf:{tiny_owl['owlvit']}", Runtime(device="cpu"))
    det = ObjectDetector(model, TextEmbeddingCache())
    text, vision = Calls(model.text_tower), Calls(model.image_tower)
    images = [png(a) for a in detection_images]
    first = det.detect(images, QUERIES)
    assert (text.calls, text.items) == (1, len(QUERIES))
    assert vision.items == len(images)
    again = det.detect(images, QUERIES)  # a repeated query set: no text tower at all
    assert text.calls == 1 and vision.items == 2 * len(images)
    assert again == first
    det.detect(images, [QUERIES[2], QUERIES[0]])  # a subset, reordered: still cached
    assert text.calls == 1
    many = [f"object number {i}" for i in range(40)]
    det.detect(images[:1], many)  # 40 queries: the image tower still runs once for the image
    assert vision.items == 3 * len(images) + 1 and text.items == len(QUERIES) + 40
    text.handle.remove()
    vision.handle.remove()


def test_query_cache_is_keyed_by_model_fingerprint(tiny_owl, tmp_path):
    cache = TextEmbeddingCache(tmp_path / "cache.sqlite")
    a = ObjectDetector(load_detector(f"hf:{tiny_owl['owlvit']}"), cache)
    b = ObjectDetector(load_detector(f"hf:{tiny_owl['owlv2']}"), cache)
    ea, eb = a.queries(QUERIES).embeddings, b.queries(QUERIES).embeddings
    assert a.model.fingerprint != b.model.fingerprint and not np.allclose(ea, eb)
    fresh = ObjectDetector(a.model, TextEmbeddingCache(tmp_path / "cache.sqlite"))  # another process: from disk
    calls = Calls(a.model.text_tower)
    assert np.array_equal(fresh.queries(QUERIES).embeddings, ea) and calls.calls == 0
    calls.handle.remove()


@pytest.mark.parametrize("family", FAMILIES)
def test_a_batch_of_n_images_equals_n_single_calls(family, detectors, detection_images):
    det = detectors[family]
    images = [png(a) for a in detection_images]
    batch = det.detect(images, QUERIES, threshold=0.0)
    for img, b in zip(images, batch, strict=True):
        (single,) = det.detect([img], QUERIES, threshold=0.0)
        sb, ss, sq = unpack(single)
        bb, bs, bq = unpack(b)
        assert sq == bq and np.abs(ss - bs).max() <= 1e-5 and np.abs(sb - bb).max() <= 1e-3


def test_queries_are_tokenised_as_owl_vit_was_trained(detectors, reference):
    """CLIP BPE, padded to 16 with "!" (id 0), end token last: the processor's exact ids."""
    det = detectors["owlvit"]
    proc, _ = reference["owlvit"]
    ids = det.model._tokenize(QUERIES)["input_ids"]
    assert torch.equal(ids, proc(text=QUERIES, return_tensors="pt")["input_ids"])
    assert ids.shape[1] == 16 and int(ids[0, -1]) == 0 and int(ids[0].argmax()) == 4  # EOS after 3 words
    assert det.model.max_query_tokens == 16


def test_an_over_long_query_is_refused_as_transformers_cannot_read_it(detectors, reference):
    long = "a " * 14 + "star"  # 15 words + start and end tokens = 17
    with pytest.raises(InvalidInput, match="17 tokens; owlvit reads at most 16") as caught:
        detectors["owlvit"].detect([png(np.zeros((20, 30, 3), np.uint8))], ["a star", long])
    assert (caught.value.field, caught.value.item) == ("queries", 1)
    proc, model = reference["owlvit"]
    with pytest.raises(RuntimeError):  # transformers' own path fails on it
        model(**proc(text=[long], images=Image.new("RGB", (30, 20)), return_tensors="pt"))
    assert detectors["owlvit"].queries(["a " * 13 + "star"])  # 16 tokens: fine


def _corrupt() -> bytes:
    return b"\x89PNG\r\n\x1a\n but not really a png"


BAD_INPUTS = [
    ("no queries", dict(), "queries", "no queries"),
    ("empty query list", dict(queries=[]), "queries", "no queries given"),
    ("both kinds", dict(queries=["a star"], query_images=["IMG"]), "queries", "not both"),
    ("empty query string", dict(queries=["a star", "  "]), "queries", "empty query"),
    ("duplicate query", dict(queries=["a star", "a star"]), "queries", "duplicate queries"),
    ("too many queries", dict(queries=[f"thing {i}" for i in range(65)]), "queries", "exceed the limit of 64"),
    ("corrupt query image", dict(query_images=["IMG", _corrupt()]), "query_images", "not a decodable image"),
    ("box outside the image", dict(query_images=["IMG"], query_boxes=[(10, 5, 90, 20)]), "query_boxes",
     "not inside the 30x20 query image"),
    ("empty box", dict(query_images=["IMG"], query_boxes=[(10, 5, 10, 20)]), "query_boxes", "not inside"),
    ("box count", dict(query_images=["IMG"], query_boxes=[None, None]), "query_boxes", "one box per query image"),
    ("box without query image", dict(queries=["a star"], query_boxes=[(0, 0, 5, 5)]), "query_boxes",
     "apply to query images"),
    ("threshold above 1", dict(queries=["a star"], threshold=1.5), "threshold", r"in \[0, 1\]"),
    ("threshold below 0", dict(queries=["a star"], threshold=-0.1), "threshold", r"in \[0, 1\]"),
    ("threshold NaN", dict(queries=["a star"], threshold=float("nan")), "threshold", r"in \[0, 1\]"),
    ("nms above 1", dict(queries=["a star"], nms_iou=2.0), "nms_iou", r"in \[0, 1\]"),
    ("top_k 0", dict(queries=["a star"], top_k=0), "top_k", "1..1000"),
]


@pytest.mark.parametrize(("name", "kwargs", "field", "match"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_a_clear_error(name, kwargs, field, match, detectors):
    det = detectors["owlvit"]
    query_img = png(np.zeros((20, 30, 3), np.uint8))
    kwargs = dict(kwargs)
    if "query_images" in kwargs:
        kwargs["query_images"] = [query_img if q == "IMG" else q for q in kwargs["query_images"]]
    with pytest.raises(InvalidInput, match=match) as caught:
        det.detect([png(np.zeros((24, 32, 3), np.uint8))], kwargs.pop("queries", None), **kwargs)
    assert caught.value.field == field


def test_bad_target_images_name_the_item(tiny_owl):
    det = ObjectDetector(load_detector(f"hf:{tiny_owl['owlvit']}", Runtime(max_image_pixels=50 * 50)))
    ok = png(np.zeros((20, 30, 3), np.uint8))
    with pytest.raises(InvalidInput, match="not a decodable image") as caught:
        det.detect([ok, _corrupt()], ["a star"])
    assert (caught.value.field, caught.value.item) == ("image", 1)
    with pytest.raises(InvalidInput, match="exceeds the 2500-pixel limit") as caught:
        det.detect([ok, ok, png(np.zeros((60, 60, 3), np.uint8))], ["a star"])
    assert (caught.value.field, caught.value.item) == ("image", 2)
    with pytest.raises(InvalidInput, match="2500-pixel limit") as caught:  # query images have the limit too
        det.detect([ok], query_images=[png(np.zeros((60, 60, 3), np.uint8))])
    assert (caught.value.field, caught.value.item) == ("query_images", 0)


def test_only_owl_models_are_detectors(tiny_owl, tiny_dirs):
    with pytest.raises(Unsupported, match="not a detector") as caught:
        load_detector("toy")
    assert caught.value.field == "model"
    with pytest.raises(Unsupported, match="model_type 'clip' is not a detector"):
        load_detector(f"hf:{tiny_dirs['hf_clip']}")
    with pytest.raises(Unsupported, match="model_type 'owlvit' is not a dual encoder"):
        load_dual_encoder(f"hf:{tiny_owl['owlvit']}")


def test_an_alias_can_name_a_transformers_folder(tiny_owl, tiny_dirs):
    register_alias("test-owl", tiny_owl["owlv2"])
    register_alias("test-clip", tiny_dirs["hf_clip"])
    try:
        assert parse_spec("test-owl").backend == "hf" and parse_spec("test-owl").canonical == "test-owl"
        det = load_detector("test-owl")
        assert det.family == "owlv2" and det.spec.raw == "test-owl"
        assert det.fingerprint != load_detector(f"hf:{tiny_owl['owlv2']}").fingerprint  # the name is in it
        assert load_dual_encoder("test-clip").family == "clip"
        assert parse_spec("toy").backend == "open_clip"
    finally:
        _ALIASES.pop("test-owl", None)
        _ALIASES.pop("test-clip", None)


def test_the_request_schema_has_the_engine_defaults_and_limits():
    from vlserve.api.schemas import MAX_QUERIES, DetectRequest
    from vlserve.detection import MAX_QUERIES as ENGINE_MAX_QUERIES
    from vlserve.detection import DetectOptions

    request = DetectRequest(images=["aGk="], queries=["a star"])
    assert DetectOptions() == DetectOptions(request.threshold, request.nms_iou, request.top_k)
    assert MAX_QUERIES == ENGINE_MAX_QUERIES == 64
