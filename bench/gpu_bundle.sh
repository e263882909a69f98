#!/usr/bin/env bash
# Packs what bench/gpu_check.sh needs on a GPU machine that reaches no package index: wheels of the pinned
# packages its image lacks, for its Python, and the MovieLens copies.
#   bash bench/gpu_bundle.sh        -> .gpu/ (git-ignored), about 41 MiB; then carry .gpu/ to the machine
# PYTHON_VERSION: the GPU machine's Python (default 3.12); DATA: the MovieLens folders (../shared/data).
#
# Which packages: every pin of constraints.txt, less the ones bench/gpu_image_packages.txt says the image
# holds (torch, numpy, pyarrow, rich, matplotlib, pytest, hypothesis and what they need), less polars,
# left out on purpose: its runtime wheel (about 54 MB) would not fit the 64 MiB a device call carries,
# only `etl generate` needs it, and the one test that reads through Polars skips without it.
# bench/gpu_bundle_check.py holds that rule: it prints the list (--print-pins) and checks the result.
set -euo pipefail
cd "$(dirname "$0")/.."
version="${PYTHON_VERSION:-3.12}"
data="${DATA:-../shared/data}"
python="${PYTHON:-python3}"
mapfile -t pins < <("$python" bench/gpu_bundle_check.py --print-pins)
[ "${#pins[@]}" -gt 0 ] || { echo "gpu_bundle: bench/gpu_bundle_check.py --print-pins printed no pins" >&2; exit 1; }
rm -rf .gpu
mkdir -p .gpu/whl
echo "gpu_bundle: ${#pins[@]} wheels for CPython $version: ${pins[*]}"
"$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$version" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    --dest .gpu/whl "${pins[@]}"
for dataset in ml-100k ml-1m; do
    tar -czf ".gpu/$dataset.tar.gz" -C "$data" "$dataset"
done
# Every pin the image lacks is bundled, once, at its pinned version, for this Python; and it fits.
"$python" bench/gpu_bundle_check.py --bundle .gpu --python-version "$version"
du -sh .gpu
