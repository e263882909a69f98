# One entry point per job. Variables can be overridden: make etl MOVIELENS_DIR=../shared/data/ml-100k
PYTHON        ?= python3
VENV          ?= .venv
BIN           := $(VENV)/bin
MOVIELENS_DIR ?= data/ml-1m
WAREHOUSE     ?= warehouse.duckdb
SPLIT         ?= random
TRAIN_ARGS    ?=
RANKER        ?= ease
RANK_ARGS     ?=
# So that etl's errors (offline, no such folder) suggest rerunning the same goals with MOVIELENS_DIR set.
export MAKECMDGOALS

.PHONY: all install etl train run test test-fast lint bench-etl bench-train bench-score bench-scale bench-threads \
	gpu-check clean readme-example

# The main job, end to end: install, data (downloaded if missing), ETL, training, predictions.
all run: etl train

# torch's CPU build where there is no NVIDIA GPU: PyPI's default torch wheel carries CUDA, several GB.
TORCH_INDEX ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,https://download.pytorch.org/whl/cpu)

# torch alone first (no dependencies: only torch is looked up on that index), then the project and the rest.
$(BIN)/python: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-deps --retries 1 $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) \
		-c constraints.txt torch
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

install: $(BIN)/python

etl: install
	$(BIN)/etl build --input $(MOVIELENS_DIR) --warehouse $(WAREHOUSE)

# Both analysts' roles: the rating model (predictions), then the ranking model (recommendations), chosen on
# validation and refitted on train + validation. A run that serves nothing exits 3 and stops make.
train: install
	$(BIN)/trainer run --warehouse $(WAREHOUSE) --split $(SPLIT) $(TRAIN_ARGS)
	ranked=$$($(BIN)/trainer run --warehouse $(WAREHOUSE) --split $(SPLIT) --model $(RANKER) $(RANK_ARGS)) \
		&& $(BIN)/trainer refit $$ranked --warehouse $(WAREHOUSE) >/dev/null

# Lint and types, then every test, the slow end-to-end ones on ../shared/data included (they skip when it is absent).
test: lint
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Unit tests only (-m 'not slow'), on two worker processes (pytest-xdist): each test has its own temporary folder.
# Hypothesis's plugin is left out: its tests are all slow, and its summary would import it for nothing.
test-fast: install
	$(BIN)/python -m pytest -m 'not slow' -n 2 -p no:hypothesispytest

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

# The README's console session on ../shared/data/ml-1m, written to docs/readme-example.txt (the README quotes it).
readme-example: install
	$(BIN)/python bench/readme_example.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache

# On a machine with a CUDA GPU: tests, then the GPU path end to end with epoch times (see README).
gpu-check:
	bash bench/gpu_check.sh
