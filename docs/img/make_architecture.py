"""Draw docs/img/architecture.png (the operator's picture in docs/operations.md): who calls whom, on
which port. Plain PIL, so it redraws anywhere:  .venv/bin/python docs/img/make_architecture.py"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

W, H = 1200, 640
BLUE, GREEN, ORANGE, GREY, INK = (214, 230, 245), (218, 240, 218), (253, 228, 200), (235, 235, 235), (30, 30, 30)


def box(d: ImageDraw.ImageDraw, xy: tuple[int, int, int, int], title: str, lines: list[str], fill: tuple[int, ...],
        dashed: bool = False) -> None:
    d.rounded_rectangle(xy, radius=10, fill=fill, outline=INK, width=1 if dashed else 2)
    x0, y0 = xy[0] + 10, xy[1] + 8
    d.text((x0, y0), title, fill=INK)
    for i, line in enumerate(lines):
        d.text((x0, y0 + 20 + 15 * i), line, fill=(70, 70, 70))


def arrow(d: ImageDraw.ImageDraw, *points: tuple[int, int], label: str = "") -> None:
    """A line through ``points`` with a head at the last; the label beside its last leg."""
    d.line(list(points), fill=INK, width=2)
    (ax, ay), (bx, by) = points[-2], points[-1]
    length = max(1.0, ((bx - ax) ** 2 + (by - ay) ** 2) ** 0.5)
    ux, uy = (bx - ax) / length, (by - ay) / length
    head = [(bx, by), (bx - 10 * ux + 5 * uy, by - 10 * uy - 5 * ux), (bx - 10 * ux - 5 * uy, by - 10 * uy + 5 * ux)]
    d.polygon(head, fill=INK)
    if label:
        d.text(((ax + bx) / 2 + 6, (ay + by) / 2 - 14), label, fill=(90, 90, 90))


def main() -> None:
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    d.text((20, 12), "vlserve: what runs where (ports are the defaults; every one is a VLSERVE_* setting)", fill=INK)
    box(d, (20, 60, 250, 170), "clients", ["curl, the openai SDK (/v1/embeddings)", "services (JSON, multipart)",
                                           "a browser"], GREY)
    box(d, (20, 230, 250, 320), "tritonclient / VLServeClient", ["gRPC :8001, HTTP :8000", "typed, same tensors"], GREY)
    box(d, (20, 420, 250, 530), "vlserve CLI", ["index build (local or --runner ray)", "eval, embed, classify,",
                                               "segment, detect, repo build"], GREY)
    box(d, (330, 40, 600, 150), "web UI  :7860  (vlserve ui)", ["Gradio; calls the gateway over HTTP",
                                                              "API key held server-side", "no torch"], GREEN)
    box(d, (330, 190, 600, 330), "HTTP gateway  :8080  (vlserve gateway)", ["FastAPI: /v1/embeddings, classify, rank,",
                                                                           "search, detect, segment, models, indexes",
                                                                           "API keys, limits, /readyz, /metrics",
                                                                           "FAISS search in-process; no torch"], GREEN)
    box(d, (700, 150, 1180, 400), "Triton Inference Server  :8000 HTTP  :8001 gRPC  :8002 metrics",
        ["model repository (vlserve repo build --model SPEC):",
         "  image_encoder, text_encoder (Matryoshka DIMENSIONS)",
         "  zero_shot_classifier (templates, descriptors, heads)",
         "  pixel_text (MaskCLIP / SCLIP / ClearCLIP / DenseCLIP)",
         "  detector (OWL-ViT / OWLv2, with --detector-model)", "python backend: thin adapters over vlserve's engine",
         "  --runtime torch (default) | onnx (onnxruntime)", "GPU instances when present (KIND_AUTO)"], BLUE)
    box(d, (330, 420, 600, 540), "indexes  (VLSERVE_INDEX_DIR, a volume)",
        ["FAISS + manifest (model fingerprint)", "SQLite metadata, captions",
         "Matryoshka funnel: coarse prefix -> rerank"], ORANGE)
    box(d, (700, 450, 1180, 600), "Ray cluster (bulk indexing)", ["vlserve index build --runner ray --ray-address ...",
                                                                "reader -> encoder actors (GPU) -> writer",
                                                                "resumable shards, content ids", "",
                                                                "planned: Milvus for indexes beyond one machine"],
        ORANGE, dashed=True)
    arrow(d, (250, 100), (330, 95), label="HTTP")
    arrow(d, (250, 130), (330, 230), label="HTTP")
    arrow(d, (465, 150), (465, 190), label="HTTP")
    arrow(d, (600, 260), (700, 260), label="gRPC")
    arrow(d, (250, 300), (300, 400), (700, 385), label="gRPC / HTTP (typed client)")
    arrow(d, (430, 330), (430, 420), label="search")
    arrow(d, (250, 475), (330, 480), label="writes")
    arrow(d, (250, 515), (290, 575), (700, 575), label="--runner ray")
    arrow(d, (700, 500), (600, 500), label="writes")
    out = Path(__file__).with_name("architecture.png")
    img.save(out)
    print(out)


if __name__ == "__main__":
    main()
