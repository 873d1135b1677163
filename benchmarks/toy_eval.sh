#!/usr/bin/env bash
# Evaluate the embedded toy model on toy world v2 (test, held-out styles, rotations, novel classes,
# retrieval) and on the v1 test split. Each `vlserve eval ... --out` writes its report with its
# provenance (command, date, machine, versions, git commit) to benchmarks/results/.
#   usage: benchmarks/toy_eval.sh [MODEL_SPEC] [RESULT_PREFIX]     (defaults: toy, toy_eval)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-toy}
P=benchmarks/results/${2:-toy_eval}
V=${VLSERVE:-.venv/bin/vlserve}
export HF_HUB_OFFLINE=1
DESC=$(mktemp -d)/descriptors.json
.venv/bin/python -c "import json; from vlserve.toyworld.novel import novel_descriptors; print(json.dumps(novel_descriptors()))" > "$DESC"

$V eval zeroshot -m "$MODEL" --data toyworld:test/shape --n 1200 -d all --out "${P}_zeroshot_shape.json" > /dev/null
$V eval zeroshot -m "$MODEL" --data toyworld:test/colour --n 1200 -d all --out "${P}_zeroshot_colour.json" > /dev/null
$V eval zeroshot -m "$MODEL" --data toyworld:test/rotated --n 1200 --out "${P}_rotated_shape.json" > /dev/null
$V eval zeroshot -m "$MODEL" --data toyworld:heldout/shape --n 1200 -d 128,32 --out "${P}_heldout_shape.json" > /dev/null
$V eval zeroshot -m "$MODEL" --data toyworld:heldout/colour --n 1200 -d 128,32 --out "${P}_heldout_colour.json" > /dev/null
$V eval zeroshot -m "$MODEL" --data toyworld:heldout-dashed/shape --n 600 --out "${P}_heldout_dashed_shape.json" > /dev/null
$V eval zeroshot -m "$MODEL" --data toyworld:test/novel --n 1200 -d all --descriptors "$DESC" \
  --out "${P}_novel_by_description.json" > /dev/null
$V eval zeroshot -m "$MODEL" --data toyworld:test/novel --n 1200 -d all --out "${P}_novel_name_only.json" > /dev/null
$V eval retrieval -m "$MODEL" --data toyworld:test --n 1000 -d all --out "${P}_retrieval.json" > /dev/null
$V eval zeroshot -m "$MODEL" --data toyworld:v1:test/shape --n 1000 -d 128,32 --out "${P}_v1_shape.json" > /dev/null
$V eval zeroshot -m "$MODEL" --data toyworld:v1:test/colour --n 1000 -d 128,32 --out "${P}_v1_colour.json" > /dev/null
$V eval retrieval -m "$MODEL" --data toyworld:v1:test --n 1000 -d 128,32 --out "${P}_v1_retrieval.json" > /dev/null
echo "wrote ${P}_*.json"
