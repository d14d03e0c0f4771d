# The two Quick start commands: `make demo` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test lint unit clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# "strict" editable mode lays the wheel's package map (adapters/ -> gridbridge.adapters,
# scheduler/ -> gridbridge.scheduler) out as a link tree, which mypy and import-linter read.
setup: $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[dev]" --config-settings editable_mode=strict

demo: setup
	$(BIN)/gridbridge demo

lint: setup
	$(BIN)/ruff check .
	cd build && ../$(BIN)/mypy --config-file ../pyproject.toml -p gridbridge
	cd build && ../$(BIN)/lint-imports ../pyproject.toml

unit: setup
	$(BIN)/pytest -m "not s3 and not slurm and not ssh and not ec2"

# Every test, with the services the marked ones need started by session fixtures; a marked
# test that is skipped fails the run.
test: lint
	GRIDBRIDGE_REQUIRE_SERVICES=1 $(BIN)/pytest

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
