"""``PixelText`` in-process: every bad input gets a clear error naming the problem, maps come back at a
bounded size in the image's aspect, a batch equals single calls, and ALIGN is refused."""

from __future__ import annotations

import numpy as np
import pytest
from image_files import png as _png

from vlserve.dense.segmenter import MAX_LABELS, PixelText, output_size
from vlserve.dense.service import PixelTextService, pack
from vlserve.errors import InvalidInput, Unsupported
from vlserve.models import load_dual_encoder


@pytest.fixture(scope="module")
def pixel_text():
    return PixelText(load_dual_encoder("toy"))


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [_png(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((60, 80), (96, 96))]


@pytest.mark.parametrize(("labels", "method", "options", "field", "match"), [
    ([], "maskclip", {}, "labels", "no labels"),
    ([f"l{i}" for i in range(10_000)], "maskclip", {}, "labels", f"at most {MAX_LABELS}"),
    (["star", " "], "maskclip", {}, "labels", "empty label"),
    (["star"], "nope", {}, "method", "unknown dense method 'nope'"),
    (["star"], "maskclip", {"background_threshold": 3.0}, "background_threshold", "outside"),
    (["star"], "maskclip", {"output_side": 5000}, "output_side", "outside"),
])
def test_bad_requests_are_refused_naming_the_problem(pixel_text, images, labels, method, options, field, match):
    with pytest.raises(InvalidInput, match=match) as err:
        pixel_text.segment(images, labels, method, **options)
    assert err.value.field == field


@pytest.mark.parametrize("template", ["a {} of {}", "no slot"])
def test_malformed_templates_are_invalid_input(pixel_text, images, template):
    with pytest.raises(InvalidInput, match="exactly one") as err:
        pixel_text.segment(images, ["star"], "maskclip", templates=["a photo of a {}.", template])
    assert (err.value.field, err.value.item) == ("templates", 1)
    # other braces are text, not format fields: no crash
    assert len(pixel_text.segment(images, ["star"], "maskclip", templates=["a {x} {}}"])) == 2


def test_requests_past_the_score_budget_or_window_limit_are_refused(pixel_text):
    wide = _png(np.zeros((8, 4000, 3), np.uint8))
    with pytest.raises(InvalidInput, match="sliding windows") as err:
        pixel_text.segment([wide], ["star"], "maskclip", stride=1)
    assert err.value.field == "stride"
    photos = [_png(np.zeros((600, 800, 3), np.uint8))] * 2
    with pytest.raises(InvalidInput, match="scores; at most") as err:
        pixel_text.segment(photos, [f"l{i}" for i in range(200)], "maskclip")
    assert err.value.field == "labels"


def test_methods_that_do_not_apply_are_unsupported(pixel_text, images):
    with pytest.raises(Unsupported, match="ResNet tower"):
        pixel_text.segment(images, ["star"], "sclip")


def test_corrupt_image_is_named(pixel_text, images):
    with pytest.raises(InvalidInput) as err:
        pixel_text.segment([images[0], b"not an image"], ["star"], "maskclip")
    assert err.value.item == 1


def test_align_is_refused(tiny_dirs):
    encoder = load_dual_encoder(f"hf:{tiny_dirs['hf_align']}")
    with pytest.raises(Unsupported, match="ALIGN"):
        PixelText(encoder)


def test_a_large_photo_gives_bounded_maps_in_its_aspect(pixel_text):
    big = np.zeros((3000, 4000, 3), np.uint8)
    big[1000:2000, 1000:3000] = (215, 35, 35)
    (result,) = pixel_text.segment([_png(big)], ["red object", "background"], "maskclip")
    assert result.scores.shape == (2, 384, 512) and result.segmentation.shape == (384, 512)
    assert result.image_size == (3000, 4000)
    assert output_size((3000, 4000), 100) == (75, 100) and output_size((40, 30), None) == (40, 30)


def test_batch_equals_single_calls_and_packs_with_padding(pixel_text, images):
    both = pixel_text.segment(images, ["star", "circle"], "vanilla", background_threshold=0.3)
    for one, image in zip(both, images, strict=True):
        (alone,) = pixel_text.segment([image], ["star", "circle"], "vanilla", background_threshold=0.3)
        assert np.abs(one.scores - alone.scores).max() <= 1e-5
        assert (one.segmentation == alone.segmentation).all()
    packed = pack(both)
    assert packed["SCORES"].shape == (2, 2, 96, 96) and packed["OUTPUT_SIZE"].tolist() == [[60, 80], [96, 96]]
    assert np.isnan(packed["SCORES"][0, :, 60:, :]).all() and (packed["SEGMENTATION"][0, :, 80:] == -1).all()


def test_service_defaults_and_refuses_denseclip_without_a_head(images):
    service = PixelTextService(load_dual_encoder("toy"), {"DENSE_HEAD": "none"})
    assert service.default_method == "maskclip"
    with pytest.raises(Unsupported, match="no DenseCLIP head"):
        service.parse(images, ["star"], "denseclip", [], None, None)


def test_sliding_windows_stitch_the_tiles_and_average_overlaps(pixel_text):
    rng = np.random.default_rng(5)
    big = rng.integers(0, 256, (192, 192, 3), dtype=np.uint8)
    labels = ["star", "circle", "red object"]
    (slid,) = pixel_text.segment([_png(big)], labels, "maskclip", stride=96, slide_side=192)
    assert slid.scores.shape == (3, 192, 192)
    for y in (0, 96):
        for x in (0, 96):
            (tile,) = pixel_text.segment([_png(big[y:y + 96, x:x + 96])], labels, "maskclip")
            assert np.abs(slid.scores[:, y:y + 96, x:x + 96] - tile.scores).max() <= 1e-5
    (overlapping,) = pixel_text.segment([_png(big[:150])], labels, "vanilla", stride=48)
    assert overlapping.scores.shape == (3, 150, 192) and np.isfinite(overlapping.scores).all()
    with pytest.raises(InvalidInput, match="stride 500") as err:
        pixel_text.segment([_png(big)], labels, "maskclip", stride=500)
    assert err.value.field == "stride"
