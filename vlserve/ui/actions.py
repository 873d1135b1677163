"""What each tab does, as plain functions of the gateway API: they take what the components hold and
return what the components show. Failures raise :class:`GatewayError` (a readable sentence); the
layout (:mod:`vlserve.ui.app`) turns those into Gradio errors."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vlserve.ui.gateway_api import GatewayAPI, GatewayError
from vlserve.ui.pictures import boxes_picture, decode_png, heatmap, open_upright, overlay

MAX_UPLOAD_BYTES = 16 << 20


def read_image(path: str | None, what: str = "image") -> bytes:
    """An uploaded file's bytes, checked to be an image the server can decode (a readable error if not)."""
    if not path:
        raise GatewayError(f"No {what}: upload one (or pick an example) first.")
    data = Path(path).read_bytes()
    if len(data) > MAX_UPLOAD_BYTES:
        raise GatewayError(f"The {what} is {len(data) / 2**20:.1f} MiB; at most {MAX_UPLOAD_BYTES >> 20} MiB.")
    try:
        Image.open(io.BytesIO(data)).verify()
    except Exception as e:  # PIL raises many types for a file that is not an image
        raise GatewayError(f"The {what} ({Path(path).name}) is not an image PIL can read: "
                           f"{type(e).__name__}.") from e
    return data


def png_bytes(image: Image.Image | np.ndarray) -> bytes:
    buf = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buf, format="PNG")
    return buf.getvalue()


def split_list(text: str | None) -> list[str]:
    """``"star, circle"`` or one per line -> ``["star", "circle"]``."""
    return [part.strip() for line in (text or "").splitlines() for part in line.split(",") if part.strip()]


def sketch_image(editor: Any) -> bytes:
    """The sketchpad's drawing, flattened onto white and cropped to the drawn strokes plus a margin,
    so a small drawing in a corner reads like a shape in the middle of a picture."""
    if editor is None:
        raise GatewayError("Nothing drawn: draw a shape on the sketchpad first.")
    composite = editor.get("composite") if isinstance(editor, dict) else editor
    if composite is None:
        raise GatewayError("Nothing drawn: draw a shape on the sketchpad first.")
    rgba = np.asarray(composite.convert("RGBA") if isinstance(composite, Image.Image) else
                      Image.fromarray(np.asarray(composite)).convert("RGBA")).astype(np.float32)
    alpha = rgba[..., 3:4] / 255.0
    rgb = rgba[..., :3] * alpha + 255.0 * (1 - alpha)
    ink = np.abs(rgb - 255.0).max(-1) > 40
    if ink.sum() < 20:
        raise GatewayError("Nothing drawn: draw a shape on the sketchpad first.")
    ys, xs = np.nonzero(ink)
    side = int(max(ys.max() - ys.min(), xs.max() - xs.min()) * 1.5) + 8
    cy, cx = (ys.max() + ys.min()) // 2, (xs.max() + xs.min()) // 2
    canvas = np.full((side, side, 3), 255, np.uint8)
    y0, x0 = cy - side // 2, cx - side // 2
    sy0, sx0 = max(0, y0), max(0, x0)
    sy1, sx1 = min(rgb.shape[0], y0 + side), min(rgb.shape[1], x0 + side)
    canvas[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = rgb[sy0:sy1, sx0:sx1].astype(np.uint8)
    return png_bytes(canvas)


def parse_filters(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


@dataclass
class Actions:
    api: GatewayAPI

    # ---- deployment ----------------------------------------------------------------------------------
    def index_names(self) -> list[str]:
        return [card["name"] for card in self.api.indexes()["data"]]

    def dims_of(self, index: str | None) -> list[int]:
        """The Matryoshka dimensions a search of ``index`` may use (its model's nested prefixes)."""
        cards = {c["name"]: c for c in self.api.indexes()["data"]}
        card = cards.get(index or "")
        if card is None:
            return []
        models = {m["fingerprint"]: m for m in self.api.models()}
        model = models.get(card["fingerprint"])
        dims = (model or {}).get("matryoshka_dimensions") or [card["dimensions"]]
        return sorted(int(d) for d in dims if int(d) <= int(card["dimensions"]))

    # ---- search --------------------------------------------------------------------------------------
    def search(self, index: str, text: str | None, image_path: str | None, k: int, dims: int | None,
               filters: str | None, by_id: int | None = None,
               shown: list[dict[str, Any]] | None = None) -> tuple[list[tuple[Image.Image, str]], str,
                                                                  list[dict[str, Any]]]:
        """Search; the gallery, a note with the measured round trip, and the hits (the session keeps
        them, so a click on result i searches by that item; ``shown`` are the hits on screen now)."""
        if not index:
            raise GatewayError("No index picked: build one in the Index tab, or start with --toy-index.")
        where = parse_filters(filters)
        t0 = time.perf_counter()
        if by_id is not None:
            clicked = next((h for h in shown or [] if int(h["id"]) == by_id), None)
            answer = self.api.search(index, ids=[by_id], k=k, dimensions=dims or None, where=where)
            query = f"item {by_id}" + (f" ({clicked['source']})" if clicked else "")
        elif image_path:
            answer = self.api.search(index, images=[read_image(image_path, "query image")], k=k,
                                     dimensions=dims or None, where=where)
            query = "the image"
        elif text and text.strip():
            answer = self.api.search(index, texts=[text.strip()], k=k, dimensions=dims or None, where=where)
            query = repr(text.strip())
        else:
            raise GatewayError("Nothing to search for: type a text or upload an image.")
        ms = (time.perf_counter() - t0) * 1000
        hits = answer["results"][0]["hits"]
        gallery = [(thumbnail(h["source"]), f"{h['score']:.3f} · {Path(h['source']).name}"
                    + (f" · {h['caption']}" if h.get("caption") else "")) for h in hits]
        used = dims or "all"
        note = (f"**{len(hits)}** of {answer['count']} items for {query} · dimensions {used} · "
                f"query took **{ms:.1f} ms** (round trip through the gateway)")
        return gallery, note, [{"id": int(h["id"]), "source": h["source"]} for h in hits]

    @staticmethod
    def hit_id(hits: list[dict[str, Any]], position: int) -> int:
        if not 0 <= position < len(hits or []):
            raise GatewayError("That result is gone; search again.")
        return int(hits[position]["id"])

    # ---- classify ------------------------------------------------------------------------------------
    def classify(self, image: bytes, labels_text: str | None, descriptors: dict[str, list[str]] | None,
                 template: str | None, multi_label: bool) -> tuple[dict[str, float], str]:
        labels = split_list(labels_text)
        if descriptors:
            answer = self.api.classify([image], descriptors=descriptors, top_k=len(descriptors),
                                       multi_label=multi_label or None)
        else:
            if not labels:
                raise GatewayError("No labels: give at least one, comma separated (e.g. circle, star, triangle).")
            templates = [template] if template and template.strip() else None
            answer = self.api.classify([image], labels=labels, templates=templates, top_k=len(labels),
                                       multi_label=multi_label or None)
        result = answer["results"][0]
        scores = {entry["label"]: float(entry["score"]) for entry in result["labels"]}
        lines = [f"Scoring rule: `{result['rule']}`" + (" (multi-label)" if result["multi_label"] else "")]
        for entry in result["labels"]:
            if entry.get("explanation"):
                parts = ", ".join(f"{d['descriptor']} ({d['similarity']:.3f})" for d in entry["explanation"][:4])
                lines.append(f"- **{entry['label']}**: {parts}")
        return scores, "\n".join(lines)

    # ---- detect --------------------------------------------------------------------------------------
    def detect(self, image: bytes, queries_text: str | None, query_image: bytes | None,
               query_box: tuple[float, float, float, float] | None,
               threshold: float) -> tuple[Image.Image, list[list[Any]]]:
        queries = split_list(queries_text)
        if query_image is None and not queries:
            raise GatewayError("No queries: type what to look for (e.g. a red star), or give a query image.")
        try:
            answer = self.api.detect(image, queries=None if query_image is not None else queries,
                                     query_image=query_image, query_box=query_box, threshold=threshold)
        except GatewayError as e:
            if e.status == 404 and "detector" in str(e):
                raise GatewayError("No detector is deployed here: start `vlserve serve --detector-model SPEC` with "
                                   "an OWL-ViT or OWLv2 checkpoint (e.g. hf:google/owlvit-base-patch32).", 404) from e
            raise
        boxes = answer["results"][0]["boxes"]
        rows = [[b["label"], round(float(b["score"]), 3), *[round(float(v), 1) for v in b["box_xyxy"]]]
                for b in boxes]
        return boxes_picture(open_upright(image), boxes), rows

    # ---- segment -------------------------------------------------------------------------------------
    def segment(self, image: bytes, labels_text: str | None,
                method: str | None) -> tuple[Image.Image, list[tuple[Image.Image, str]], dict[str, float]]:
        labels = split_list(labels_text)
        if not labels:
            raise GatewayError("No labels: give at least one, comma separated (e.g. star, circle).")
        answer = self.api.segment(image, labels, method=None if method in (None, "", "default") else method)
        result = answer["results"][0]
        seg = decode_png(result["mask_png"]).astype(np.int64) - 1
        picture = overlay(open_upright(image), seg, labels)
        lo, hi = result.get("score_range") or (0.0, 1.0)
        maps = [(heatmap(decode_png(png).astype(np.float32), 0.0, 255.0), f"{label} (scores {lo:.2f} to {hi:.2f})")
                for label, png in zip(labels, result.get("heatmaps_png") or [], strict=False)]
        return picture, maps, {k: float(v) for k, v in result["pixel_share"].items()}


def thumbnail(source: str, side: int = 160) -> Image.Image:
    """An indexed item's picture (the gateway reports server-side paths), or a grey tile if it is gone."""
    try:
        with Image.open(source) as im:
            img = im.convert("RGB")
    except (OSError, ValueError):
        return Image.new("RGB", (side, side), (200, 200, 200))
    img.thumbnail((side, side))
    return img
