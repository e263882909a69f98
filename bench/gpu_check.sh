#!/usr/bin/env bash
# The GPU check, in one go, for a machine with a CUDA GPU: install, run the test suite (the CUDA tests
# run there instead of skipping), then train on the GPU end to end and print the epoch times.
#   MOVIELENS_DIR=/path/to/ml-1m bash bench/gpu_check.sh      (default: ../shared/data/ml-1m)
# The logs and figures go to $OUT (default ./gpu-check). DEVICE=cpu runs the same steps on the CPU,
# to check the script itself on a machine without a GPU (slowly: I-AutoRec takes minutes there).
# On a machine that reaches no package index, run bench/gpu_bundle.sh first (elsewhere) and bring .gpu/ along:
# the script then uses that machine's own python3 (which holds torch) with the bundle's wheels and data.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-check}"   # the logs and figures only (a device machine sends back at most 8 files)
work="$(mktemp -d)"        # the warehouse and the runs' folders
device="${DEVICE:-cuda}"
mkdir -p "$out"
if [ -d .gpu/whl ]; then
    python="${PYTHON:-python3}"
    "$python" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu-site \
        .gpu/whl/*.whl
    export PYTHONPATH="/tmp/gpu-site:$PWD"
    data_dir=/tmp/gpu-data
    mkdir -p "$data_dir"
    for archive in .gpu/*.tar.gz; do tar -xzf "$archive" -C "$data_dir"; done
else
    make install
    python=.venv/bin/python
    data_dir=../shared/data
fi
data="${MOVIELENS_DIR:-$data_dir/ml-1m}"
"$python" -c "import torch; print('torch', torch.__version__)"
if [ "$device" = cuda ]; then
    "$python" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
fi
"$python" -m pytest -q -m 'not slow' tests/trainer 2>&1 | tee "$out/tests.log" || echo "SOME TESTS FAILED: see $out/tests.log"
"$python" -m etl build -q --input "$data" --warehouse "$work/gpu.duckdb"
train() { "$python" -m trainer run --warehouse "$work/gpu.duckdb" --device "$device" --runs-dir "$work/runs" "$@"; }
train 2>&1 | tee "$out/train-cached.log"
train --cache-budget-mb 1 --epochs 5 2>&1 | tee "$out/train-streamed.log"
# The best model (I-AutoRec, movie rows, 500 units): the one whose CPU time (about 2 minutes a seed) a GPU should cut most.
train --model i-autorec 2>&1 | tee "$out/train-i-autorec.log"
"$python" bench/train_bench.py --device "$device" --skip-notebook --data-dir "$data_dir" --json "$out/train-bench.json" \
    2>&1 | tee "$out/train-bench.log"
"$python" -c "import duckdb; print(duckdb.connect('$work/gpu.duckdb', read_only=True).sql('SELECT * FROM run_metrics'))" \
    | tee "$out/run_metrics.txt"
