#!/usr/bin/env bash
# The GPU check, in one go, for a machine with a CUDA GPU: install, run the test suite (the CUDA tests
# run there instead of skipping), then train on the GPU end to end and print the epoch times.
#   MOVIELENS_DIR=/path/to/ml-1m bash bench/gpu_check.sh      (default: ../shared/data/ml-1m)
# Figures are also written to $OUT (or ./gpu-check) when set. DEVICE=cpu runs the same steps on the CPU,
# to check the script itself on a machine without a GPU (slowly: I-AutoRec takes minutes there).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-check}"
device="${DEVICE:-cuda}"
data="${MOVIELENS_DIR:-../shared/data/ml-1m}"
mkdir -p "$out"
make install
if [ "$device" = cuda ]; then
    .venv/bin/python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
fi
.venv/bin/python -m pytest -q -m 'not slow' tests/trainer 2>&1 | tee "$out/tests.log"
.venv/bin/etl build -q --input "$data" --warehouse "$out/gpu.duckdb"
train() { .venv/bin/trainer run --warehouse "$out/gpu.duckdb" --device "$device" --runs-dir "$out/runs" "$@"; }
train 2>&1 | tee "$out/train-cached.log"
train --cache-budget-mb 1 --epochs 5 2>&1 | tee "$out/train-streamed.log"
# The best model (I-AutoRec, movie rows, 500 units): the one whose CPU time (about 2 minutes a seed) a GPU should cut most.
train --model i-autorec 2>&1 | tee "$out/train-i-autorec.log"
.venv/bin/python bench/train_bench.py --device "$device" --skip-notebook --json "$out/train-bench.json" 2>&1 \
    | tee "$out/train-bench.log"
.venv/bin/python -c "import duckdb; print(duckdb.connect('$out/gpu.duckdb', read_only=True).sql('SELECT * FROM run_metrics'))" \
    | tee "$out/run_metrics.txt"
