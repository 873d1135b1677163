"""The Gradio Blocks front end: Search, Classify (upload or draw), Detect, Segment, Index, Evaluate.

Every tab calls the gateway over HTTP (:mod:`vlserve.ui.gateway_api`); each action is also a named API
endpoint (``/search``, ``/classify``, ``/classify_sketch``, ``/detect``, ``/segment``, ``/indexes``,
``/build_index``, ``/remove_items``, ``/evaluate``) for ``gradio_client``. Errors are shown as the
gateway's sentence, never a traceback.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable, Iterator
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr
import pandas as pd

from vlserve.ui import jobs
from vlserve.ui.actions import Actions, read_image, sketch_image
from vlserve.ui.evaluate import evaluate, unpack_zip
from vlserve.ui.examples import toy_examples
from vlserve.ui.gateway_api import GatewayAPI, GatewayError
from vlserve.ui.pictures import confusion_picture

log = logging.getLogger("vlserve.ui")
F = TypeVar("F", bound=Callable[..., Any])

TEMPLATES = ["a photo of a {}.", "a drawing of a {}.", "a {}.", "a hand-drawn {}.", "a {} outline."]
METHODS = ["default", "denseclip", "maskclip", "sclip", "clearclip", "vanilla"]
CSS = """
.vl-note {font-size: 0.9em; color: var(--body-text-color-subdued);}
footer {display: none !important;}
"""
INTRO = ("**vlserve**: vision-language retrieval, zero-shot classification, detection and pixel-text maps, "
         "served through Triton. Every tab calls the HTTP gateway at `{url}`; the examples come from the "
         "toy world the embedded models were trained on.")


def upload_image(**kwargs: Any) -> gr.Image:
    """A ``gr.Image`` whose uploads stay lossless (PNG, not Gradio's default WebP re-encode) and whose
    non-image uploads get a readable error instead of a processing traceback. (The instance's
    ``preprocess`` is wrapped rather than the class subclassed: Gradio writes a ``.pyi`` file beside
    the module of every component subclass.)"""
    kwargs.setdefault("type", "filepath")
    kwargs.setdefault("format", "png")
    kwargs.setdefault("sources", ["upload", "clipboard"])
    image = gr.Image(**kwargs)
    stock = image.preprocess

    def preprocess(payload: Any) -> Any:
        try:
            return stock(payload)
        except (OSError, ValueError, SyntaxError) as e:  # PIL: UnidentifiedImageError (an OSError), truncated...
            name = Path(str(getattr(payload, "path", "") or "upload")).name
            raise gr.Error(f"{name} is not an image that can be read ({type(e).__name__}); upload a PNG, JPEG "
                           f"or WebP file.", print_exception=False) from None

    image.preprocess = preprocess  # type: ignore[method-assign]
    return image


def readable(fn: F) -> F:
    """Gateway failures (and bad uploads) as a Gradio error with the sentence, not a traceback. A
    generator stays a generator function, so Gradio streams its updates."""
    if inspect.isgeneratorfunction(fn):
        @wraps(fn)
        def streaming(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(*args, **kwargs)
            except GatewayError as e:
                raise gr.Error(str(e), print_exception=False) from None
        return streaming  # type: ignore[return-value]

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GatewayError as e:
            raise gr.Error(str(e), print_exception=False) from None
    return wrapper  # type: ignore[return-value]


def build_ui(gateway_url: str, api_key: str | None, index_dir: Path, examples_dir: Path) -> gr.Blocks:
    api = GatewayAPI(gateway_url, api_key)
    act = Actions(api)
    ex = toy_examples(examples_dir)

    def safe_indexes() -> list[str]:
        try:
            return act.index_names()
        except GatewayError:
            return []

    def safe_dims(index: str | None) -> list[int]:
        try:
            return act.dims_of(index)
        except GatewayError:
            return []

    with gr.Blocks(title="vlserve", fill_width=True) as ui:
        gr.Markdown(INTRO.format(url=gateway_url))
        with gr.Tabs():
            # ---- Search ---------------------------------------------------------------------------------
            with gr.Tab("Search", id="search"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=300):
                        names = safe_indexes()
                        s_index = gr.Dropdown(label="Index", choices=names, value=names[0] if names else None,
                                              allow_custom_value=True)
                        s_text = gr.Textbox(label="Text query", placeholder="a red star", elem_id="search-text")
                        s_image = upload_image(label="…or an image query", height=160)
                        dims = safe_dims(names[0] if names else None)
                        s_dims = gr.Slider(dims[0] if dims else 1, dims[-1] if dims else 1024,
                                           value=dims[-1] if dims else 1024, step=1, label="Matryoshka dimensions",
                                           info="snapped to the model's nested prefixes; fewer: faster, coarser")
                        s_k = gr.Slider(1, 48, value=12, step=1, label="k (results)")
                        s_filters = gr.Textbox(label="Metadata filters", lines=2, placeholder="source=...",
                                               info="FIELD=VALUE (also != < <= > >=), one per line")
                        s_go = gr.Button("Search", variant="primary", elem_id="search-go")
                        gr.Examples([["a red star"], ["a blue circle"], ["a hand-drawn green triangle"]],
                                    inputs=[s_text], label="Try")
                    with gr.Column(scale=3):
                        s_note = gr.Markdown(elem_classes="vl-note", elem_id="search-note")
                        s_gallery = gr.Gallery(label="Results (click one to search by it)", columns=6, height=560,
                                               object_fit="contain", elem_id="search-gallery", allow_preview=False)

                def snap(index: str, dims: Any) -> int | None:
                    allowed = act.dims_of(index)
                    if not allowed or dims is None:
                        return None
                    return min(allowed, key=lambda d: (abs(d - float(dims)), -d))

                @readable
                def do_search(index: str, text: str, image: str | None, dims: Any, k: float,
                              filters: str) -> tuple[Any, str, Any]:
                    return act.search(index, text, image, int(k), snap(index, dims), filters)

                @readable
                def by_result(index: str, dims: Any, k: float, filters: str, shown: Any,
                              evt: gr.SelectData) -> tuple[Any, str, Any]:
                    return act.search(index, None, None, int(k), snap(index, dims), filters,
                                      by_id=act.hit_id(shown, int(evt.index)), shown=shown)

                @readable
                def pick_index(index: str) -> Any:
                    allowed = act.dims_of(index)
                    if not allowed:
                        return gr.skip()
                    return gr.update(minimum=allowed[0], maximum=allowed[-1], value=allowed[-1])

                s_hits = gr.State([])  # this session's results on screen (a click searches by one)
                inputs = [s_index, s_text, s_image, s_dims, s_k, s_filters]
                s_go.click(do_search, inputs, [s_gallery, s_note, s_hits], api_name="search")
                s_text.submit(do_search, inputs, [s_gallery, s_note, s_hits], api_visibility="private")
                s_gallery.select(by_result, [s_index, s_dims, s_k, s_filters, s_hits], [s_gallery, s_note, s_hits],
                                 api_visibility="private")
                s_index.change(pick_index, [s_index], [s_dims], api_visibility="private")

            # ---- Classify -------------------------------------------------------------------------------
            with gr.Tab("Classify", id="classify"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=320), gr.Tabs():
                        with gr.Tab("Upload", id="classify-upload"):
                            c_image = upload_image(label="Image", height=260, elem_id="classify-image")
                            gr.Examples([[p] for p in ex["singles"]], inputs=[c_image], label="Examples")
                            c_go = gr.Button("Classify the image", variant="primary", elem_id="classify-go")
                        with gr.Tab("Draw", id="classify-draw"):
                            c_sketch = gr.Sketchpad(label="Draw a shape", type="pil", canvas_size=(384, 384),
                                                    height=420, elem_id="classify-sketch",
                                                    brush=gr.Brush(default_size=10, colors=[
                                                        "#d62728", "#2ca02c", "#1f77b4", "#000000"],
                                                        color_mode="fixed"))
                            c_go_sketch = gr.Button("Classify the drawing", variant="primary",
                                                    elem_id="classify-sketch-go")
                    with gr.Column(scale=1, min_width=320):
                        c_labels = gr.Textbox(label="Labels (comma separated)", elem_id="classify-labels",
                                              value="circle, square, triangle, star, cross, diamond")
                        c_template = gr.Dropdown(label="Template", choices=TEMPLATES, value=TEMPLATES[0],
                                                 allow_custom_value=True, info="{} is replaced by each label")
                        with gr.Accordion("Classification by description (optional)", open=False):
                            c_use_desc = gr.Checkbox(label="Score by these descriptors instead of the labels",
                                                     value=False)
                            c_desc = gr.Dataframe(headers=["class", "descriptors (; separated)"],
                                                  value=[["circle", "round; no corners"],
                                                         ["triangle", "three corners; three straight sides"],
                                                         ["star", "five points; spiky"]],
                                                  interactive=True, wrap=True)
                        c_multi = gr.Checkbox(label="Multi-label (independent sigmoid scores; SigLIP family)",
                                              value=False)
                    with gr.Column(scale=1, min_width=320):
                        c_scores = gr.Label(label="Scores", num_top_classes=6, elem_id="classify-scores")
                        c_explain = gr.Markdown(elem_classes="vl-note")

                def descriptors(use: bool, table: Any) -> dict[str, list[str]] | None:
                    if not use:
                        return None
                    rows = table.values.tolist() if isinstance(table, pd.DataFrame) else (table or [])
                    out = {str(r[0]).strip(): [d.strip() for d in str(r[1]).split(";") if d.strip()]
                           for r in rows if r and str(r[0]).strip()}
                    if not out or not all(out.values()):
                        raise GatewayError("The descriptor table needs a class and at least one descriptor per row.")
                    return out

                @readable
                def do_classify(image: str | None, labels: str, template: str, use: bool, table: Any,
                                multi: bool) -> tuple[dict[str, float], str]:
                    return act.classify(read_image(image), labels, descriptors(use, table), template, multi)

                @readable
                def do_classify_sketch(sketch: Any, labels: str, template: str, use: bool, table: Any,
                                       multi: bool) -> tuple[dict[str, float], str]:
                    return act.classify(sketch_image(sketch), labels, descriptors(use, table), template, multi)

                rest = [c_labels, c_template, c_use_desc, c_desc, c_multi]
                c_go.click(do_classify, [c_image, *rest], [c_scores, c_explain], api_name="classify")
                c_go_sketch.click(do_classify_sketch, [c_sketch, *rest], [c_scores, c_explain],
                                  api_name="classify_sketch")

            # ---- Detect ---------------------------------------------------------------------------------
            with gr.Tab("Detect", id="detect"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=320):
                        d_image = upload_image(label="Image", height=260, elem_id="detect-image")
                        gr.Examples([[p] for p in ex["scenes"]], inputs=[d_image], label="Examples")
                        d_queries = gr.Textbox(label="Text queries (comma separated)",
                                               value="a red star, a blue circle", elem_id="detect-queries")
                        with gr.Accordion("…or an image query (one-shot)", open=False):
                            d_qimage = upload_image(label="Query image", height=160)
                            d_qbox = gr.Textbox(label="Query box x0,y0,x1,y1 in the query image (optional)")
                        d_threshold = gr.Slider(0.0, 1.0, value=0.1, step=0.01, label="Score threshold")
                        d_go = gr.Button("Detect", variant="primary", elem_id="detect-go")
                    with gr.Column(scale=2):
                        d_out = gr.Image(label="Boxes", type="pil", format="png", height=420, interactive=False,
                                         elem_id="detect-out")
                        d_table = gr.Dataframe(headers=["query", "score", "x0", "y0", "x1", "y1"], interactive=False)

                @readable
                def do_detect(image: str | None, queries: str, qimage: str | None, qbox: str,
                              threshold: float) -> tuple[Any, Any]:
                    query = read_image(qimage, "query image") if qimage else None
                    box = None
                    if query is not None and qbox and qbox.strip():
                        try:
                            x0, y0, x1, y1 = (float(v) for v in qbox.split(","))
                        except ValueError:
                            raise GatewayError(f"Query box {qbox!r}: give four numbers x0,y0,x1,y1.") from None
                        box = (x0, y0, x1, y1)
                    picture, rows = act.detect(read_image(image), queries, query, box, float(threshold))
                    return picture, pd.DataFrame(rows, columns=["query", "score", "x0", "y0", "x1", "y1"])

                d_go.click(do_detect, [d_image, d_queries, d_qimage, d_qbox, d_threshold], [d_out, d_table],
                           api_name="detect")

            # ---- Segment --------------------------------------------------------------------------------
            with gr.Tab("Segment", id="segment"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=320):
                        g_image = upload_image(label="Image", height=260, elem_id="segment-image")
                        gr.Examples([[p] for p in ex["scenes"]], inputs=[g_image], label="Examples")
                        g_labels = gr.Textbox(label="Labels (comma separated)", value="star, circle, triangle, square",
                                              elem_id="segment-labels")
                        g_method = gr.Dropdown(label="Method", choices=METHODS, value="default",
                                               info="default: the DenseCLIP head where the model has one")
                        g_go = gr.Button("Segment", variant="primary", elem_id="segment-go")
                    with gr.Column(scale=1):
                        g_out = gr.Image(label="Mask overlay", type="pil", format="png", height=420, interactive=False,
                                         elem_id="segment-out")
                        g_share = gr.Label(label="Share of the pixels", num_top_classes=8)
                    with gr.Column(scale=1):
                        g_maps = gr.Gallery(label="Per-label score maps (one shared scale)", columns=2, height=420,
                                            allow_preview=True)

                @readable
                def do_segment(image: str | None, labels: str, method: str) -> tuple[Any, Any, Any]:
                    return act.segment(read_image(image), labels, method)

                g_go.click(do_segment, [g_image, g_labels, g_method], [g_out, g_maps, g_share], api_name="segment")

            # ---- Index ----------------------------------------------------------------------------------
            with gr.Tab("Index", id="index"):
                with gr.Row():
                    with gr.Column(scale=2):
                        i_table = gr.Dataframe(headers=["name", "model", "count", "captions", "dims", "coarse dims",
                                                        "FAISS factory", "served by"], interactive=False,
                                               label="Indexes", elem_id="index-table")
                        i_refresh = gr.Button("Refresh")
                    with gr.Column(scale=1, min_width=320):
                        gr.Markdown("**Build or grow an index** from a folder (or CSV) on the server. Re-running "
                                    "adds only what is new.")
                        i_name = gr.Textbox(label="Index name", value="my-index")
                        i_source = gr.Textbox(label="Server-side folder or CSV", value=str(ex["eval"]))
                        i_build = gr.Button("Build / grow", variant="primary")
                        i_status = gr.Markdown(elem_classes="vl-note")
                        gr.Markdown("**Remove items** by id (from a search result).")
                        i_ids = gr.Textbox(label="Item ids (comma separated)")
                        i_remove = gr.Button("Remove", variant="stop")

                @readable
                def list_indexes() -> Any:
                    answer = api.indexes()
                    rows = [[c["name"], c["model"], c["count"], c["text_count"], c["dimensions"],
                             c["coarse_dimensions"], c["factory"] or "", c["served_by"] or "(no deployed model)"]
                            for c in answer["data"]]
                    rows += [[name, f"failed to load: {why}", 0, 0, 0, 0, "", ""]
                             for name, why in answer["failed"].items()]
                    return pd.DataFrame(rows, columns=["name", "model", "count", "captions", "dims", "coarse dims",
                                                       "FAISS factory", "served by"])

                @readable
                def build_index(name: str, source: str, progress: gr.Progress = gr.Progress()) -> Iterator[Any]:
                    models = api.models()
                    existing = set(act.index_names())
                    model = None if name.strip() in existing else (models[0]["id"] if models else None)
                    for fraction, line in jobs.build(index_dir, name, source, model):
                        if fraction is not None:
                            progress(fraction, desc=line)
                        yield f"{line}", gr.skip()
                    yield f"Done: `{line}`", list_indexes()

                @readable
                def remove_items(name: str, ids: str) -> tuple[str, Any]:
                    try:
                        numbers = [int(v) for v in ids.replace(" ", "").split(",") if v]
                    except ValueError:
                        raise GatewayError(f"Item ids {ids!r}: give whole numbers, comma separated.") from None
                    report = jobs.remove(index_dir, name, numbers)
                    return f"Removed: `{json.dumps(report)}`", list_indexes()

                i_refresh.click(list_indexes, [], [i_table], api_name="indexes")
                i_build.click(build_index, [i_name, i_source], [i_status, i_table], api_name="build_index")
                i_remove.click(remove_items, [i_name, i_ids], [i_status, i_table], api_name="remove_items")

            # ---- Evaluate -------------------------------------------------------------------------------
            with gr.Tab("Evaluate", id="evaluate"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=320):
                        e_folder = gr.Textbox(label="Labelled folder on the server (FOLDER/CLASS/IMAGE)",
                                              value=str(ex["eval"]))
                        e_zip = gr.File(label="…or upload a zip of CLASS/IMAGE", file_types=[".zip"], type="filepath")
                        e_go = gr.Button("Evaluate", variant="primary")
                        e_summary = gr.Markdown(elem_id="eval-summary")
                    with gr.Column(scale=1):
                        e_curve = gr.LinePlot(x="dimensions", y="accuracy", color="metric", y_lim=[0, 1.02],
                                              title="Accuracy vs Matryoshka dimensions", height=300)
                        e_table = gr.Dataframe(headers=["dimensions", "top-1", "top-5"], interactive=False)
                    with gr.Column(scale=1):
                        e_confusion = gr.Image(label="Confusion matrix (rows: truth; full dimension)", type="pil",
                                               format="png", interactive=False, height=420,
                                               elem_id="eval-confusion")

                @readable
                def do_evaluate(folder: str, upload: str | None,
                                progress: gr.Progress = gr.Progress()) -> tuple[str, Any, Any, Any]:
                    root = unpack_zip(upload) if upload else Path((folder or "").strip())
                    models = api.models()
                    dims = list((models[0].get("matryoshka_dimensions") if models else None) or [0])
                    report = evaluate(api, root, dims, lambda f, d: progress(f, desc=d))
                    full = max(report["by_dim"])
                    best = report["by_dim"][full]
                    summary = (f"**{report['n']} images, {len(report['classes'])} classes** · at full dimension "
                               f"top-1 **{best['top1']:.3f}**, top-5 **{best['top5']:.3f}**")
                    curve = pd.DataFrame([{"dimensions": d, "accuracy": v[m], "metric": m}
                                          for d, v in report["by_dim"].items() for m in ("top1", "top5")])
                    table = pd.DataFrame([[d or "full", round(v["top1"], 4), round(v["top5"], 4)]
                                          for d, v in report["by_dim"].items()],
                                         columns=["dimensions", "top-1", "top-5"])
                    return summary, curve, table, confusion_picture(report["confusion"], report["classes"])

                e_go.click(do_evaluate, [e_folder, e_zip], [e_summary, e_curve, e_table, e_confusion],
                           api_name="evaluate")

        def on_load() -> tuple[Any, Any]:
            names = safe_indexes()
            choice = names[0] if names else None
            try:
                table = list_indexes()
            except gr.Error:
                table = None
            return gr.update(choices=names, value=choice), table

        ui.load(on_load, [], [s_index, i_table], api_visibility="private")
    return ui
