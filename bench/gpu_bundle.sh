#!/usr/bin/env bash
# Packs what bench/gpu_check.sh needs on a GPU machine that reaches no package index (this workplace's
# device machines): wheels of the packages its image lacks, for its Python, and the MovieLens copies.
#   bash bench/gpu_bundle.sh        -> .gpu/ (git-ignored), about 45 MB; then carry .gpu to the machine
# PYTHON_VERSION: the GPU machine's Python (default 3.12); DATA: the MovieLens folders (../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
version="${PYTHON_VERSION:-3.12}"
data="${DATA:-../shared/data}"
rm -rf .gpu
mkdir -p .gpu/whl
# The GPU image holds torch, numpy, pyarrow, rich, matplotlib, pytest and hypothesis; it lacks these, taken
# at constraints.txt's versions. Not polars: its 54 MB runtime would not fit the 64 MB a device call
# carries (the one test that reads through Polars skips without it, and only `etl generate` needs it).
pins=()
for name in duckdb duckdb_engine SQLAlchemy greenlet typer pydantic pydantic_core annotated-types typing-inspection; do
    pins+=("$(grep -i "^${name}==" constraints.txt)")
done
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$version" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --dest .gpu/whl "${pins[@]}"
found=$(find .gpu/whl -name '*.whl' | wc -l)
[ "$found" -eq "${#pins[@]}" ] || { echo "gpu_bundle: $found wheels for ${#pins[@]} packages: run it again" >&2; exit 1; }
for dataset in ml-100k ml-1m; do
    tar -czf ".gpu/$dataset.tar.gz" -C "$data" "$dataset"
done
du -sh .gpu
