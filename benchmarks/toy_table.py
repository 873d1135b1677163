"""Print the docs/toyworld.md results tables from the evaluation reports in benchmarks/results/.

    python benchmarks/toy_table.py [PREFIX]      (default prefix: toy_eval, as written by toy_eval.sh)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def top1(report: dict | None, dim: str = "128") -> str:
    if not report or dim not in report["by_dim"]:
        return "–"
    return f"{report['by_dim'][dim]['top1']:.3f}"


def worst_class(report: dict | None) -> str:
    if not report:
        return "–"
    per = report["by_dim"]["128"]["per_class_top1"]
    cls = min(per, key=lambda c: per[c] if per[c] is not None else 1.0)
    return f"{per[cls]:.3f} ({cls})"


def main(prefix: str = "toy_eval") -> None:
    rows = [
        ("shape, test split", "zeroshot_shape"), ("colour, test split", "zeroshot_colour"),
        ("shape, all rotations (test, 0-360° evenly)", "rotated_shape"),
        ("**shape, held-out rasteriser**", "heldout_shape"), ("**colour, held-out rasteriser**", "heldout_colour"),
        ("shape, held-out dashed outlines (stress set)", "heldout_dashed_shape"),
        ("novel classes by description (12 classes)", "novel_by_description"),
        ("novel classes, name only (chance 0.083)", "novel_name_only"),
        ("v1 world: shape", "v1_shape"), ("v1 world: colour", "v1_colour"),
    ]
    print(f"| metric ({prefix}) | top-1 at 128 | at 32 (D/4) | worst class at 128 | n |")
    print("|---|---|---|---|---|")
    for label, name in rows:
        r = load(f"{prefix}_{name}")
        print(f"| {label} | {top1(r)} | {top1(r, '32')} | {worst_class(r)} | {r['n'] if r else '–'} |")
    ret = load(f"{prefix}_retrieval")
    if ret:
        p10 = ret["attribute_queries"]["precision@10"]
        dims = list(p10)
        print(f"\n| text→image attribute precision@10 ({ret['attribute_queries']['n']} queries, "
              f"{ret['images']} scenes) | " + " | ".join(dims) + " |")
        print("|---|" + "---|" * len(dims))
        print("| | " + " | ".join(f"{p10[d]:.3f}" for d in dims) + " |")
    for name in ("zeroshot_shape", "zeroshot_colour"):
        r = load(f"{prefix}_{name}")
        if r and len(r["by_dim"]) > 2:
            print(f"\nMatryoshka curve, {name}: " + ", ".join(f"{d}: {v['top1']:.3f}" for d, v in r["by_dim"].items()))


if __name__ == "__main__":
    main(*sys.argv[1:])
