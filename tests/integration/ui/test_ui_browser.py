"""The web UI in a real browser: Debian's chromium, headless, driven by Playwright, against the live
stack (Triton + gateway + UI, toy models). Each test saves a 1280x800 screenshot as a test artefact
(``$VLSERVE_UI_SHOTS``, default ``test-artifacts/ui/``)."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import UIStack

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CHROMIUM = Path(os.environ.get("VLSERVE_CHROMIUM", "/usr/bin/chromium"))
SHOTS = Path(os.environ.get("VLSERVE_UI_SHOTS", Path(__file__).resolve().parents[3] / "test-artifacts" / "ui"))
TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run"])
        yield b
        b.close()


@pytest.fixture
def page(browser, ui_stack: UIStack):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(ui_stack.ui_url)
    page.wait_for_selector("#search-go")
    yield page
    context.close()


def shot(page, name: str) -> Path:  # type: ignore[no-untyped-def]
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(300)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def top_label(page) -> str:  # type: ignore[no-untyped-def]
    """The class the Label component shows as its header (its first line after the title)."""
    lines = [ln.strip() for ln in page.locator("#classify-scores").inner_text().splitlines() if ln.strip()]
    return lines[1] if len(lines) > 1 and lines[0] == "Scores" else lines[0]


def test_text_search_fills_the_gallery_with_matching_images(page, ui_stack: UIStack) -> None:  # type: ignore[no-untyped-def]
    page.locator("#search-text textarea").fill("a red star")
    page.click("#search-go")
    page.wait_for_selector("#search-gallery img")
    page.wait_for_function("document.querySelectorAll('#search-gallery img').length >= 10")
    captions = [ln for ln in page.locator("#search-gallery").inner_text().splitlines() if " · " in ln]
    files = [c.split(" · ")[1] for c in captions][:10]
    red_star = [any(o["shape"] == "star" and o["colour"] == "red" for o in ui_stack.truth[f]) for f in files]
    assert len(files) == 10 and sum(red_star) >= 7, list(zip(files, red_star, strict=True))
    assert "query took" in page.locator("#search-note").inner_text()
    shot(page, "search")
    page.locator("#search-gallery img").nth(1).click()  # a click searches by that result
    page.wait_for_function("document.querySelector('#search-note').innerText.includes('for item ')")
    assert files[1] in page.locator("#search-note").inner_text()


def test_a_drawn_triangle_is_classified_triangle(page) -> None:  # type: ignore[no-untyped-def]
    page.get_by_role("tab", name="Classify").click()
    page.get_by_role("tab", name="Draw").click()
    page.locator("#classify-sketch button[title='Brush']").click()
    canvas = page.locator("#classify-sketch canvas").last
    box = canvas.bounding_box()
    corners = [(0.25, 0.78), (0.5, 0.22), (0.75, 0.78), (0.25, 0.78)]
    at = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in corners]
    page.mouse.move(*at[0])
    page.mouse.down()
    for (x0, y0), (x1, y1) in itertools.pairwise(at):
        for t in range(1, 21):
            page.mouse.move(x0 + (x1 - x0) * t / 20, y0 + (y1 - y0) * t / 20)
    page.mouse.up()
    page.click("#classify-sketch-go")
    page.wait_for_function("document.querySelector('#classify-scores').innerText.includes('%')")
    assert top_label(page) == "triangle", page.locator("#classify-scores").inner_text()
    shot(page, "classify")


def test_an_uploaded_image_classifies_with_the_right_top_bar(page, ui_stack: UIStack) -> None:  # type: ignore[no-untyped-def]
    page.get_by_role("tab", name="Classify").click()
    page.locator("#classify-image input[type=file]").set_input_files(str(ui_stack.examples / "red-star.png"))
    page.wait_for_selector("#classify-image img")
    page.click("#classify-go")
    page.wait_for_function("document.querySelector('#classify-scores').innerText.includes('%')")
    assert top_label(page) == "star", page.locator("#classify-scores").inner_text()


def test_detection_without_a_detector_says_not_deployed(page, ui_stack: UIStack) -> None:  # type: ignore[no-untyped-def]
    page.get_by_role("tab", name="Detect").click()
    page.locator("#detect-image input[type=file]").set_input_files(str(ui_stack.examples / "scene-0.png"))
    page.wait_for_selector("#detect-image img")
    page.click("#detect-go")
    page.get_by_text("No detector is deployed here").first.wait_for()
    shot(page, "detect")


def test_segmentation_shows_an_overlay(page, ui_stack: UIStack) -> None:  # type: ignore[no-untyped-def]
    page.get_by_role("tab", name="Segment").click()
    page.locator("#segment-image input[type=file]").set_input_files(str(ui_stack.examples / "scene-0.png"))
    page.wait_for_selector("#segment-image img")
    page.locator("#segment-labels textarea").fill("star, circle")
    page.click("#segment-go")
    overlay = page.locator("#segment-out img")
    overlay.wait_for()
    assert overlay.evaluate("img => img.complete && img.naturalWidth") > 100
    shot(page, "segment")


def test_a_non_image_upload_shows_a_readable_error(page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "notes.png"
    bad.write_text("these are notes, not a picture")
    page.get_by_role("tab", name="Classify").click()
    page.locator("#classify-image input[type=file]").set_input_files(str(bad))
    page.click("#classify-go")
    page.get_by_text("notes.png is not an image that can be read").first.wait_for()
    assert "Traceback" not in page.content()
    shot(page, "error")


def test_index_and_evaluate_tabs_render_their_results(page) -> None:  # type: ignore[no-untyped-def]
    page.get_by_role("tab", name="Index").click()
    page.wait_for_function("document.querySelector('#index-table').innerText.includes('toyworld')")
    shot(page, "index")
    page.get_by_role("tab", name="Evaluate").click()
    page.get_by_role("button", name="Evaluate").click()
    page.wait_for_function("document.querySelector('#eval-summary').innerText.includes('36 images, 6 classes')")
    page.locator("#eval-confusion img").wait_for()
    shot(page, "evaluate")


def test_screenshots_for_the_docs() -> None:
    """With VLSERVE_UI_DOCS set, copy this run's screenshots there (the README's pictures)."""
    target = os.environ.get("VLSERVE_UI_DOCS")
    if not target:
        pytest.skip("set VLSERVE_UI_DOCS=docs/img/ui to refresh the README's screenshots")
    Path(target).mkdir(parents=True, exist_ok=True)
    for name in ("search", "classify", "segment", "index", "evaluate"):
        shutil.copy(SHOTS / f"{name}.png", Path(target) / f"ui_{name}.png")
