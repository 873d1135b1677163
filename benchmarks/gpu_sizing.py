"""GPU sizing notes from published figures (no GPU measured here): the compute ceiling of each image
tower on each GPU, images/s = peak dense FP16 tensor FLOP/s / FLOPs per image.

Sources (both published, both quoted as data below):
* FLOPs per image and parameters: open_clip's ``docs/model_profile.csv`` (mlfoundations/open_clip,
  ``image_gflops`` at the model's own input size; FLOPs, i.e. two per multiply-add: its ViT-B-16 row,
  35.1, is twice timm's 17.6 GMACs);
* peak dense FP16 tensor-core throughput (no sparsity): NVIDIA's product datasheets.

A ceiling is not a forecast: served throughput is a fraction of it (attention, layer norms and
memory traffic run below the tensor-core peak; decoding and resizing JPEGs on the CPU often binds
first). The JSON states the fraction the deploy notes plan with and why.

    .venv/bin/python benchmarks/gpu_sizing.py        # writes benchmarks/results/gpu_sizing.json
"""

from __future__ import annotations

from _common import write_result

# open_clip docs/model_profile.csv (model, image size, image params M, image GFLOPs)
MODELS = {
    "ViT-B-32 (CLIP, laion2b)": (224, 87.85, 8.82),
    "ViT-B-16 (CLIP)": (224, 86.19, 35.13),
    "ViT-B-16-SigLIP": (224, 92.88, 35.42),
    "ViT-L-14 (CLIP)": (224, 303.97, 162.03),
    "ViT-SO400M-14-SigLIP": (224, 427.68, 220.35),
}
# NVIDIA datasheets: dense FP16 tensor TFLOP/s (the "with sparsity" figures are twice these) and memory
GPUS = {"T4": (65, 16), "L4": (121, 24), "A10": (125, 24), "A100 SXM": (312, 80), "H100 SXM": (989, 80)}
PLANNING_FRACTION = 0.3


def main() -> None:
    rows = []
    for model, (side, mparams, gflops) in MODELS.items():
        for gpu, (tflops, memory_gb) in GPUS.items():
            ceiling = tflops * 1e12 / (gflops * 1e9)
            rows.append({"model": model, "image_size": side, "image_mparams": mparams, "image_gflops": gflops,
                         "gpu": gpu, "fp16_dense_tflops": tflops, "memory_gb": memory_gb,
                         "ceiling_images_per_s": round(ceiling), "planning_images_per_s":
                         round(ceiling * PLANNING_FRACTION, -1)})
    result = {"kind": "derived from published figures; nothing measured on a GPU",
              "sources": {"flops": "mlfoundations/open_clip docs/model_profile.csv (image_gflops)",
                          "gpus": "NVIDIA product datasheets, dense FP16 tensor TFLOP/s without sparsity"},
              "planning_fraction": PLANNING_FRACTION,
              "planning_fraction_why": "transformer inference at batch 32-64 in FP16 commonly reaches 30-50% of "
                                       "the tensor-core peak; the lower end leaves room for preprocessing and "
                                       "the text tower",
              "rows": rows}
    write_result("gpu_sizing", result)


if __name__ == "__main__":
    main()
