"""The picture in docs/dense.md: toy v2 test scenes with their true masks and the segmentations of
MaskCLIP and of the embedded DenseCLIP head (labels: the 6 shapes), one row per scene.

    .venv/bin/python benchmarks/dense_examples.py [--n 6] [--out docs/img/dense_examples.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def main() -> None:
    from vlserve.dense.render import overlay
    from vlserve.dense.segmenter import PixelText
    from vlserve.dense.service import TOY_HEAD_DIR
    from vlserve.models import load_dual_encoder
    from vlserve.toyworld.dataset import detection_scene
    from vlserve.toyworld.scene import SHAPES

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--out", type=Path, default=Path("docs/img/dense_examples.png"))
    args = ap.parse_args()
    pt = PixelText(load_dual_encoder("toy"), TOY_HEAD_DIR)
    labels = list(SHAPES)
    cell, head = 160, 18
    columns = ["image", "truth", "MaskCLIP", "DenseCLIP head"]
    rows = []
    for i in range(args.n):
        scene = detection_scene("test", i)
        image = Image.fromarray(scene.image)
        truth = scene.semantic_mask().astype(np.int64) - 1
        mask_clip = pt.segment([scene.image], labels, "maskclip", background_threshold=0.48)[0].segmentation
        dense = pt.segment([scene.image], labels, "denseclip")[0].segmentation
        tiles = [image.resize((cell, cell))]
        for seg in (truth, mask_clip, dense):
            tinted = overlay(image, seg, labels).crop((0, 0, seg.shape[1], seg.shape[0]))
            tiles.append(tinted.resize((cell, cell), Image.Resampling.NEAREST))
        rows.append(tiles)
    key = overlay(Image.new("RGB", (8, 8)), np.full((8, 8), -1), labels)
    legend = key.crop((0, 8, key.width, key.height))
    sheet = Image.new("RGB", (cell * len(columns) + legend.width + 8, head + cell * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for c, name in enumerate(columns):
        draw.text((c * cell + 4, 3), name, fill=(0, 0, 0))
    for r, tiles in enumerate(rows):
        for c, tile in enumerate(tiles):
            sheet.paste(tile, (c * cell, head + r * cell))
    sheet.paste(legend, (cell * len(columns) + 8, head))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
