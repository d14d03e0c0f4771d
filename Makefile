# The two Quick start commands: `make demo` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test test-deps lint unit clean $(LINT_TREE)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

setup: $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[aws,ssh,dask,dev]"

# mypy and import-linter read an installed copy of the package, where adapters/ and
# scheduler/ already sit at gridbridge/adapters and gridbridge/scheduler as the wheel maps them.
LINT_TREE := build/lint-tree
$(LINT_TREE): setup
	rm -rf $(LINT_TREE)
	$(BIN)/python -m pip install -q --no-deps --no-compile --target $(LINT_TREE) .

demo: setup
	$(BIN)/gridbridge demo

lint: setup $(LINT_TREE)
	$(BIN)/ruff check .
	cd $(LINT_TREE) && ../../$(BIN)/mypy --config-file ../../pyproject.toml -p gridbridge
	cd $(LINT_TREE) && ../../$(BIN)/lint-imports ../../pyproject.toml

unit: setup
	$(BIN)/pytest -m "not s3 and not slurm and not ssh and not ec2"

# PyTorch for the checkpoint store's tensor tests: pinned to the CPU build (an unpinned
# torch resolves to a multi-GB CUDA build).
test-deps: setup
	$(BIN)/python -m pip install -q "torch==2.13.0"

# Every test, with the services the marked ones need started by session fixtures; a marked
# test that is skipped fails the run.
test: lint test-deps
	GRIDBRIDGE_REQUIRE_SERVICES=1 $(BIN)/pytest

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
