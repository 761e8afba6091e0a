#!/usr/bin/env bash
# One device call: train VeTTA's tree AE on the GPU (benchmarks/gpu_vetta.py) within a fixed
# wall budget, falling back to in-loop batch building if the worker loader fails early.
# Usage (on the GPU machine, repo root): bash benchmarks/gpu_vetta_run.sh DATA_DIR OUT_DIR BUDGET_S
set -u
data=$1; out=$2; budget=$3
export PYTHONUNBUFFERED=1
start=$(date +%s)
common=(--device "${DEVICE:-cuda}" --data "$data" --out "$out" --init data/checkpoints/vetta
        --segment-share 0 --no-rotate --tree-batch 512 --queries 8 --lr 5e-4
        --weights xyz=300,pos=0.05 --refine-window 0 --n-val 40 --n-dice 40
        --eval-share 0.12 --monitor-every-s 30 --no-progress)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
"${PY:-python3}" benchmarks/gpu_vetta.py "${common[@]}" --workers 12 --budget-s "$budget" && exit 0
left=$(( budget - ($(date +%s) - start) - 10 ))
echo "first run failed; retrying without loader workers, budget ${left} s"
[ "$left" -gt 60 ] && "${PY:-python3}" benchmarks/gpu_vetta.py "${common[@]}" --workers 0 --budget-s "$left"
