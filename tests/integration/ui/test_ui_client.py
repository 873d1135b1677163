"""Each tab's named API endpoint, called with ``gradio_client`` against the live UI (which calls the live
gateway, which calls Triton): real answers, and readable errors for bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image, ImageDraw

from .conftest import UIStack

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NO_DESCRIPTORS = {"headers": ["class", "descriptors"], "data": [["", ""]]}


@pytest.fixture(scope="module")
def client(ui_stack: UIStack) -> Client:
    return Client(ui_stack.ui_url, verbose=False)


def names_in(gallery: list[dict[str, Any]]) -> list[str]:
    """The toy image file of each result, from its caption "score · FILE · caption"."""
    return [item["caption"].split(" · ")[1] for item in gallery]


def test_every_tab_has_a_named_endpoint(client: Client) -> None:
    named = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert {"/search", "/classify", "/classify_sketch", "/detect", "/segment", "/indexes", "/build_index",
            "/remove_items", "/evaluate"} <= named


def test_text_search_returns_images_with_the_query_attributes(client: Client, ui_stack: UIStack) -> None:
    gallery, note = client.predict("toyworld", "a red star", None, 128, 10, "", api_name="/search")
    files = names_in(gallery)
    assert len(files) == 10 and "query took" in note
    red_star = [any(o["shape"] == "star" and o["colour"] == "red" for o in ui_stack.truth[f]) for f in files]
    assert all(red_star[:3]) and sum(red_star) >= 7, list(zip(files, red_star, strict=True))


def test_search_at_fewer_dimensions_says_so_and_still_finds_stars(client: Client, ui_stack: UIStack) -> None:
    gallery, note = client.predict("toyworld", "a star", None, 20, 5, "", api_name="/search")  # snaps to 16
    assert "dimensions 16" in note
    assert all(any(o["shape"] == "star" for o in ui_stack.truth[f]) for f in names_in(gallery)[:3])


def test_classify_an_uploaded_image(client: Client, ui_stack: UIStack) -> None:
    scores, explanation = client.predict(handle_file(str(ui_stack.examples / "blue-triangle.png")),
                                         "circle, square, triangle, star", "a photo of a {}.", False,
                                         NO_DESCRIPTORS, False, api_name="/classify")
    assert scores["label"] == "triangle" and "softmax" in explanation


def test_classify_by_description_explains_each_class(client: Client, ui_stack: UIStack) -> None:
    table = {"headers": ["class", "descriptors"],
             "data": [["circle", "round; no corners"], ["star", "five points; spiky"]]}
    scores, explanation = client.predict(handle_file(str(ui_stack.examples / "red-star.png")), "", "", True, table,
                                         False, api_name="/classify")
    assert scores["label"] == "star"
    assert "five points" in explanation and "round" in explanation


def test_classify_a_sketch(client: Client, tmp_path: Path) -> None:
    """A triangle drawn as strokes on a transparent canvas (what the sketchpad sends) is a triangle."""
    canvas = Image.new("RGBA", (384, 384), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).line([(90, 300), (192, 90), (300, 300), (90, 300)], fill=(214, 39, 40, 255), width=10)
    path = tmp_path / "sketch.png"
    canvas.save(path)
    sketch = {"background": None, "layers": [], "composite": handle_file(str(path))}
    scores, _ = client.predict(sketch, "circle, square, triangle, star, cross, diamond", "a photo of a {}.", False,
                               NO_DESCRIPTORS, False, api_name="/classify_sketch")
    assert scores["label"] == "triangle", scores


def test_segment_marks_the_star(client: Client, ui_stack: UIStack) -> None:
    """The example scene (a red star and a blue circle): each label covers about its true share of the
    pixels (within half of it either way) and every label gets a heatmap."""
    from vlserve.toyworld.dataset import SHAPES, composed_scene

    overlay, maps, share = client.predict(handle_file(str(ui_stack.examples / "scene-0.png")), "star, circle",
                                          "default", api_name="/segment")
    assert Image.open(overlay).size[0] > 0 and len(maps) == 2
    shares = {c["label"]: c["confidence"] for c in share["confidences"]}
    truth = composed_scene([("star", "red"), ("circle", "blue")], index=0, image_size=224).semantic_mask()
    for shape in ("star", "circle"):
        true_share = float((truth == SHAPES.index(shape) + 1).mean())
        assert abs(shares[shape] - true_share) < 0.5 * true_share, (shape, shares, true_share)


def test_detect_without_a_detector_is_a_readable_not_deployed(client: Client, ui_stack: UIStack) -> None:
    with pytest.raises(AppError, match="No detector is deployed here"):
        client.predict(handle_file(str(ui_stack.examples / "scene-0.png")), "a red star", None, "", 0.1,
                       api_name="/detect")


def test_a_non_image_upload_is_a_readable_error(client: Client, tmp_path: Path) -> None:
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(AppError, match=r"notes\.png is not an image that can be read"):
        client.predict(handle_file(str(bad)), "circle", "a photo of a {}.", False, NO_DESCRIPTORS, False,
                       api_name="/classify")


def test_no_labels_is_a_readable_error(client: Client, ui_stack: UIStack) -> None:
    with pytest.raises(AppError, match="No labels"):
        client.predict(handle_file(str(ui_stack.examples / "red-star.png")), " , ", "a photo of a {}.", False,
                       NO_DESCRIPTORS, False, api_name="/classify")


def test_build_grow_search_and_remove_an_index(client: Client, ui_stack: UIStack) -> None:
    """Built from a server-side folder through the UI; the gateway serves it at once (it re-reads
    changed manifests); removing an item shrinks it; a rebuild adds only what is new."""
    status, table = client.predict("ui-built", str(ui_stack.examples / "eval"), api_name="/build_index")
    rows = {r[0]: r for r in table["data"]}
    assert rows["ui-built"][2] == 36, status
    gallery, _ = client.predict("ui-built", "a star", None, 128, 5, "", api_name="/search")
    assert len(gallery) == 5
    hit = httpx.post(f"{ui_stack.gateway_url}/v1/search", json={"index": "ui-built", "texts": ["a star"], "k": 1},
                     headers={"Authorization": "Bearer ui-test-key"}).json()["results"][0]["hits"][0]
    assert "/star/" in hit["source"]
    _, table = client.predict("ui-built", str(hit["id"]), api_name="/remove_items")
    assert {r[0]: r for r in table["data"]}["ui-built"][2] == 35
    status, table = client.predict("ui-built", str(ui_stack.examples / "eval"), api_name="/build_index")
    assert {r[0]: r for r in table["data"]}["ui-built"][2] == 35, status  # removed stays removed; nothing new


def test_build_from_a_missing_folder_is_a_readable_error(client: Client) -> None:
    with pytest.raises(AppError, match="No such folder or file on the server"):
        client.predict("nowhere", "/no/such/folder", api_name="/build_index")


def test_evaluate_a_folder(client: Client, ui_stack: UIStack) -> None:
    summary, curve, table, confusion = client.predict(str(ui_stack.examples / "eval"), None, api_name="/evaluate")
    assert "36 images, 6 classes" in summary
    full = table["data"][-1]
    assert full[0] in (128, "128") and float(full[1]) >= 0.8
    dims = sorted({row[0] for row in curve["data"]})
    assert dims == [16, 32, 64, 128]
    assert np.asarray(Image.open(confusion)).shape[0] > 100


def test_evaluate_a_zip_upload(client: Client, ui_stack: UIStack, tmp_path: Path) -> None:
    import zipfile

    archive = tmp_path / "shapes.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted((ui_stack.examples / "eval").rglob("*.png")):
            if f.parent.name in ("circle", "star"):
                z.write(f, f"shapes/{f.parent.name}/{f.name}")
    summary, _, table, _ = client.predict("", handle_file(str(archive)), api_name="/evaluate")
    assert "12 images, 2 classes" in summary and float(table["data"][-1][1]) >= 0.9


def test_the_key_stays_server_side(ui_stack: UIStack) -> None:
    """The gateway refuses a caller without the key; the UI (holding it server-side) is served to anyone
    and its page carries no key."""
    assert httpx.get(f"{ui_stack.gateway_url}/v1/indexes").status_code == 401
    page = httpx.get(ui_stack.ui_url).text + httpx.get(f"{ui_stack.ui_url}/config").text
    assert "ui-test-key" not in page
