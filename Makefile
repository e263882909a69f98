# One entry point per job. Variables can be overridden: make etl MOVIELENS_DIR=../shared/data/ml-100k
PYTHON        ?= python3
VENV          ?= .venv
BIN           := $(VENV)/bin
MOVIELENS_DIR ?= data/ml-1m
WAREHOUSE     ?= warehouse.duckdb
SPLIT         ?= random
TRAIN_ARGS    ?=
# So that etl's errors (offline, no such folder) suggest rerunning the same goals with MOVIELENS_DIR set.
export MAKECMDGOALS

.PHONY: all install etl train run test test-fast lint bench-etl bench-train bench-score bench-scale bench-threads gpu-check clean

# The main job, end to end: install, data (downloaded if missing), ETL, training, predictions.
all run: etl train

$(BIN)/python: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

install: $(BIN)/python

etl: install
	$(BIN)/etl build --input $(MOVIELENS_DIR) --warehouse $(WAREHOUSE)

train: install
	$(BIN)/trainer run --warehouse $(WAREHOUSE) --split $(SPLIT) $(TRAIN_ARGS)

# Lint and types, then every test, the slow end-to-end ones on ../shared/data included (they skip when it is absent).
test: lint
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Unit tests only (-m 'not slow').
test-fast: install
	$(BIN)/python -m pytest -m 'not slow'

bench-etl: install
	$(BIN)/python bench/etl_bench.py --input $(MOVIELENS_DIR)

bench-train: install
	$(BIN)/python bench/train_bench.py

# torch's thread settings (1, 2, the default's choice) against 0, 1 and 2 busy neighbour processes (docs/benchmarks.md).
bench-threads: install
	$(BIN)/python bench/thread_bench.py

# Synthetic 1 M, 10 M and 32 M ratings: ETL, one epoch and publishing each, wall time and peak RSS per step.
bench-score: install
	$(BIN)/python bench/score_bench.py --input $(MOVIELENS_DIR)

bench-scale: install
	$(BIN)/python bench/scale_bench.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache

# On a machine with a CUDA GPU: tests, then the GPU path end to end with epoch times (see README).
gpu-check:
	bash bench/gpu_check.sh
