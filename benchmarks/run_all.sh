#!/usr/bin/env bash
# Rewrites every results file in benchmarks/results/ that a figure in README.md or docs/ cites
# (see benchmarks/README.md), one benchmark after the other so they never share the CPU.
# Usage: benchmarks/run_all.sh [python]   (default .venv/bin/python); about 15 minutes on 2 free cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
$PY benchmarks/bench_zeroshot.py --rounds 5 --ensemble-labels 25
$PY benchmarks/bench_triton.py --rounds 5 --seconds 5
$PY benchmarks/bench_detection.py --rounds 5 --seconds 2 --images 8
$PY benchmarks/bench_dense.py --rounds 7 --calls 5
.venv/bin/vlserve eval segmentation --model toy --methods vanilla,maskclip,denseclip --n 300 --out benchmarks/results/segmentation_toy_denseclip.json
$PY benchmarks/bench_ingest.py --n 192 --rounds 5
$PY benchmarks/bench_funnel.py --n 1000000 --methods funnel
$PY benchmarks/bench_funnel.py --data toy --n 30000 --tag _toy
$PY benchmarks/bench_precision.py --batch 16 --rounds 5
$PY benchmarks/parity_report.py
nice -n 19 $PY benchmarks/bench_gateway.py
$PY benchmarks/bench_10m.py --n 200000 --factory IVF2048,PQ16np --fp16-sample 0 --sweep "" --tag _200k_pq16np
$PY benchmarks/bench_10m.py --n 200000 --factory IVF2048,SQ8 --fp16-sample 0 --sweep "" --tag _200k_sq8
$PY benchmarks/bench_10m.py --n 10000000  # ~25 min more, 10.3 GB of temporary files (deleted at the end)
