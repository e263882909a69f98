#!/usr/bin/env bash
# shellcheck disable=SC2329  # the step_* functions are called by name: step_${name//-/_}
# The GPU check, in one go, for a machine with a CUDA GPU: install, run the test suite (the CUDA tests
# run there instead of skipping), then train on the GPU end to end and print the epoch times.
#   MOVIELENS_DIR=/path/to/ml-1m bash bench/gpu_check.sh      (default: ../shared/data/ml-1m)
# DEVICE=cpu runs the same steps on the CPU, to check the script itself on a machine without a GPU
# (slowly: I-AutoRec takes minutes there). On a machine that reaches no package index, run
# bench/gpu_bundle.sh first (elsewhere) and bring .gpu/ along: the script then uses that machine's own
# python3 (which holds torch) with the bundle's wheels and data. docs/gpu.md says more.
#
# The steps, in this order. Each runs even when one before it failed; the summary says which passed.
#   setup            install: the bundle's wheels and MovieLens copies (.gpu/), or `make install`
#   env              Python, torch and the GPU; each pinned package's version (gpu_bundle_check.py --installed)
#   tests            pytest -m 'not slow' tests/trainer
#   etl              etl build of ml-1m into a scratch warehouse
#   train-cached     trainer run with the defaults (200 epochs, the training matrix cached on the device)
#   train-streamed   trainer run streaming the matrix from DuckDB each epoch (--cache-budget-mb 1), 5 epochs
#   train-i-autorec  trainer run --model i-autorec
#   train-kernel-ae  trainer run --model kernel-ae (the best single model: full-batch L-BFGS on dense products)
#   train-glocal-k   trainer run --model glocal-k --init-from <that kernel-ae run> (GLocal-K's fine-tuning)
#   train-bench      bench/train_bench.py --skip-notebook (ml-100k u1 seven times, then ml-1m once)
#   run-metrics      the scratch warehouse's run_metrics table
#   epochs           for each train-*.log: epoch 1's seconds (CUDA start-up included) and the median from
#                    epoch 2 on (train-glocal-k writes to check.log only: a device machine sends back 8 files)
#
# Settings (environment variables):
#   DEVICE=cuda|cpu                 the device to train on (default cuda)
#   OUT=DIR                         where the files go (default ./gpu-check)
#   MOVIELENS_DIR=DIR               the ml-1m folder (default: the bundle's copy, or ../shared/data/ml-1m)
#   PYTHON=python                   the interpreter (default: python3 with .gpu/, else .venv/bin/python)
#   GPU_CHECK_STEPS="a b"           run only these steps (space- or comma-separated); the rest show 'skip'.
#                                   GPU_CHECK_STEPS=epochs recomputes the medians from the logs in $OUT.
#   GPU_CHECK_FAIL_STEP=name        that step runs `false` instead of its command (to test this script)
#   GPU_CHECK_DRY=1                 every step runs `echo` instead of its command (to test this script)
#   GPU_CHECK_STEP_TIMEOUT=seconds  stop a step that runs longer (status 'timeout'), so later steps run
# Exit status: 0 when every step that ran passed, 1 when one failed, 2 on an unknown step name.
#
# Files in $OUT (8: a device machine sends back at most 8). A step's own file is rewritten when it runs.
#   summary.txt      each step's status, exit code and seconds, the epoch medians, and the result;
#                    rewritten after each step, so a run stopped midway still says how far it got
#   check.log        everything every step printed, in order
#   train-cached.log, train-streamed.log, train-i-autorec.log, train-kernel-ae.log   each training run's output
#   train-bench.json bench/train_bench.py's figures
#   run-metrics.txt  the run_metrics table
set -uo pipefail   # not -e: a failed step is recorded, and the next one runs
cd "$(dirname "$0")/.."

steps=(setup env tests etl train-cached train-streamed train-i-autorec train-kernel-ae train-glocal-k train-bench
    run-metrics epochs)
out="${OUT:-gpu-check}"
device="${DEVICE:-cuda}"
steps_wanted="${GPU_CHECK_STEPS:-}"
read -r -a only <<< "${steps_wanted//,/ }"   # empty: every step
fail_step="${GPU_CHECK_FAIL_STEP:-}"
dry="${GPU_CHECK_DRY:-0}"
step_timeout="${GPU_CHECK_STEP_TIMEOUT:-}"

for name in ${only[@]+"${only[@]}"} ${fail_step:+"$fail_step"}; do
    [[ " ${steps[*]} " == *" $name "* ]] || { echo "gpu_check: no step named '$name' (steps: ${steps[*]})" >&2; exit 2; }
done
if [ -n "$step_timeout" ] && ! [[ "$step_timeout" =~ ^[0-9]+$ ]]; then
    echo "gpu_check: GPU_CHECK_STEP_TIMEOUT is a whole number of seconds, not '$step_timeout'" >&2
    exit 2
fi

if [ -d .gpu/whl ]; then   # a machine without a package index: its own python3, the bundle's wheels and data
    bundle=1
    python="${PYTHON:-python3}"
    site=/tmp/gpu-site
    data_dir=/tmp/gpu-data
    export PYTHONPATH="$site:$PWD"
else
    bundle=0
    python="${PYTHON:-.venv/bin/python}"
    site=
    data_dir=../shared/data
    export PYTHONPATH="$PWD"
fi
data="${MOVIELENS_DIR:-$data_dir/ml-1m}"
work="$(mktemp -d)"        # the scratch warehouse, the runs' folders, the epoch figures
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
: > "$out/check.log"
export python device out data data_dir bundle site work

step_setup() {
    if [ "$bundle" = 1 ]; then
        rm -rf "$site" "$data_dir"
        mkdir -p "$data_dir"
        "$python" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$site" .gpu/whl/*.whl
        for archive in .gpu/*.tar.gz; do tar -xzf "$archive" -C "$data_dir"; done
        echo "installed $(find .gpu/whl -name '*.whl' | wc -l) wheels into $site; MovieLens: $(ls "$data_dir")"
    else
        make install
    fi
}
step_env() {
    if command -v nvidia-smi > /dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    fi
    "$python" - "$device" <<'EOF'
import sys, torch
print("python", sys.version.split()[0], sys.executable)
print("torch", torch.__version__, "| built for CUDA", torch.version.cuda, "| CUDA available:", torch.cuda.is_available())
if sys.argv[1] == "cuda":
    assert torch.cuda.is_available(), "no CUDA device"
    properties = torch.cuda.get_device_properties(0)
    print(f"GPU {properties.name}, {properties.total_memory / 2**30:.0f} GiB, compute capability {properties.major}.{properties.minor}")
EOF
    "$python" bench/gpu_bundle_check.py --installed
}
step_tests() { "$python" -m pytest -q -p no:cacheprovider -m 'not slow' tests/trainer; }
step_etl() { "$python" -m etl build -q --input "$data" --warehouse "$work/gpu.duckdb"; }
train() { "$python" -m trainer run --warehouse "$work/gpu.duckdb" --device "$device" --runs-dir "$work/runs" "$@"; }
step_train_cached() { train; }
step_train_streamed() { train --cache-budget-mb 1 --epochs 5; }
step_train_i_autorec() { train --model i-autorec; }
step_train_kernel_ae() { train --model kernel-ae; }
step_train_glocal_k() {   # fine-tunes the kernel-ae run the step before trained
    local parent
    parent="$("$python" - "$work/gpu.duckdb" <<'EOF'
import sys, duckdb
query = "SELECT run_id FROM runs WHERE model = 'kernel-ae' ORDER BY finished_at DESC LIMIT 1"
row = duckdb.connect(sys.argv[1], read_only=True).execute(query).fetchone()
sys.exit("no kernel-ae run to fine-tune") if row is None else print(row[0])
EOF
)" || return 1
    train --model glocal-k --init-from "$parent"
}
step_train_bench() {
    rm -f "$out/train-bench.json"
    "$python" bench/train_bench.py --device "$device" --skip-notebook --data-dir "$data_dir" --json "$out/train-bench.json"
}
step_run_metrics() {   # a block per run, a column a line: the table is too wide for a log
    "$python" - "$work/gpu.duckdb" <<'EOF'
import sys, duckdb
result = duckdb.connect(sys.argv[1], read_only=True).execute("SELECT * FROM run_metrics")
columns = [column[0] for column in result.description]
rows = result.fetchall()
for row in rows:
    print("\n".join(f"{column:<24} {value}" for column, value in zip(columns, row)), end="\n\n")
print(f"{len(rows)} run(s) in run_metrics")
EOF
}
step_epochs() {
    "$python" - "$out/train-cached.log" "$out/train-streamed.log" "$out/train-i-autorec.log" \
        "$out/train-kernel-ae.log" <<'EOF' | tee "$work/epochs.txt"
import re, statistics, sys
from pathlib import Path

# The trainer's line per epoch when stderr is no terminal: "epoch 3/200  train RMSE 0.9123  (0.051 s)".
EPOCH = re.compile(r"epoch (\d+)/(\d+)\s.*\(([0-9.]+) s\)\s*$")
print("epoch seconds: epoch 1 (start-up included: CUDA's on a GPU), and the median from epoch 2 on")
found = 0
for name in sys.argv[1:]:
    path = Path(name)
    seconds = {}
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            match = EPOCH.match(line.strip())
            if match:
                seconds[int(match[1])] = float(match[3])
    if not seconds:
        print(f"  {path.stem:<16} {'no log' if not path.is_file() else 'no epoch lines'}")
        continue
    found += 1
    first = f"{seconds[1]:.3f} s" if 1 in seconds else "-"
    later = [s for epoch, s in sorted(seconds.items()) if epoch >= 2]
    text = f"  {path.stem:<16} {len(seconds):>4} epochs   epoch 1 {first:>9}"
    if later:
        text += (f"   median of epochs 2-{max(seconds)} {statistics.median(later):.4f} s"
                 f"   (min {min(later):.4f}, max {max(later):.4f})")
    print(text)
sys.exit(0 if found else 1)
EOF
}
export -f step_setup step_env step_tests step_etl train step_train_cached step_train_streamed \
    step_train_i_autorec step_train_kernel_ae step_train_glocal_k step_train_bench step_run_metrics step_epochs

own_file() {   # the file of $OUT a step writes its output to besides check.log, if any
    case $1 in
        train-cached | train-streamed | train-i-autorec | train-kernel-ae) echo "$out/$1.log" ;;
        run-metrics) echo "$out/run-metrics.txt" ;;
    esac
}

declare -A status code secs
write_summary() {   # $1: the result line
    {
        echo "GPU check: DEVICE=$device, $python, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), host ${HOSTNAME:-?}"
        printf '%-16s %-8s %4s %9s\n' step status exit seconds
        local name
        for name in "${steps[@]}"; do
            printf '%-16s %-8s %4s %9s\n' "$name" "${status[$name]:-pending}" "${code[$name]:--}" "${secs[$name]:--}"
        done
        if [ -s "$work/epochs.txt" ]; then echo; cat "$work/epochs.txt"; fi
        echo
        local passed=() failed=() skipped=()
        for name in "${steps[@]}"; do
            case ${status[$name]:-} in
                pass) passed+=("$name") ;;
                FAIL | timeout) failed+=("$name") ;;
                skip) skipped+=("$name") ;;
            esac
        done
        echo "passed: ${passed[*]:-none}"
        echo "failed: ${failed[*]:-none}"
        [ "${#skipped[@]}" -eq 0 ] || echo "skipped: ${skipped[*]}"
        echo "$1"
    } > "$out/summary.txt"
}

any_failed=0
for name in "${steps[@]}"; do
    if [ "${#only[@]}" -gt 0 ] && [[ " ${only[*]} " != *" $name "* ]]; then
        status[$name]=skip
        continue
    fi
    command=("step_${name//-/_}")
    if [ "$name" = "$fail_step" ]; then
        command=(false)
    elif [ "$dry" = 1 ]; then
        command=(echo "dry run: ${command[0]}")
    fi
    file="$(own_file "$name")"
    [ -z "$file" ] || : > "$file"
    status[$name]=running
    write_summary "result: unfinished (stopped during $name)"
    echo "==== $name: ${command[*]}  ($(date -u +%H:%M:%S))" | tee -a "$out/check.log"
    started=$(date +%s.%N)
    if [ -n "$step_timeout" ]; then
        timeout -k 10 "$step_timeout" bash -c 'set -euo pipefail; "$@"' "$name" "${command[@]}"
    else
        (set -euo pipefail; "${command[@]}")
    fi 2>&1 | tee -a "$out/check.log" ${file:+"$file"}
    rc=${PIPESTATUS[0]}
    secs[$name]=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    code[$name]=$rc
    if [ "$rc" -eq 0 ]; then
        status[$name]=pass
    elif [ -n "$step_timeout" ] && [ "$rc" -eq 124 ]; then
        status[$name]=timeout
        any_failed=1
    else
        status[$name]=FAIL
        any_failed=1
    fi
    echo "==== $name: ${status[$name]} (exit $rc, ${secs[$name]} s)" | tee -a "$out/check.log"
done

if [ "$any_failed" = 0 ]; then
    write_summary "result: PASS"
else
    write_summary "result: FAIL"
fi
echo
cat "$out/summary.txt"
exit "$any_failed"
