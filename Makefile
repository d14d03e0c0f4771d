# The two Quick start commands: `make demo` and `make test`. Both set up what they need.
# The inner loop: `make check` (lint, types and the tests that need no service).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test test-deps lint lint-deps check unit clean $(LINT_TREE) \
        federation-up federation-down demo-federation

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

setup: $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[aws,ssh,dask,postgres,dev]"

# mypy and import-linter read an installed copy of the package, where adapters/ and
# scheduler/ already sit at gridbridge/adapters and gridbridge/scheduler as the wheel maps them.
LINT_TREE := build/lint-tree
$(LINT_TREE): setup
	rm -rf $(LINT_TREE) build/lib  # a stale build/lib would hide a package missing from pyproject
	$(BIN)/python -m pip install -q --no-deps --no-compile --target $(LINT_TREE) .

demo: setup
	$(BIN)/gridbridge demo

# The whole bridge on this machine (root): real Slurm, SSH edge nodes in network namespaces,
# SeaweedFS S3 shared with every tier, the EC2 emulation; one gridbridge.yaml naming them all.
federation-up: setup
	PYTHON=$(BIN)/python bash deploy/dev/federation-up.sh

federation-down:
	bash deploy/dev/federation-down.sh

# One training job preempted on each tier the way that tier does it (laptop, cluster, spot,
# edge) and resumed on the next, checked bit-identical to an uninterrupted run; the tour test
# runs the same code over all 16 ordered pairs.
demo-federation: federation-up
	$(BIN)/python deploy/dev/tour.py

# Every shell script: the dev stack and the edge nodes' scripts (the glob may match none).
SHELL_SCRIPTS = $(wildcard deploy/dev/*.sh adapters/edge/*.sh)

# shellcheck is Debian's package, installed with apt-get (as root) when missing, the way the
# dev scripts install theirs; with it present, nothing is installed.
lint-deps:
	@command -v shellcheck >/dev/null || bash -c '. deploy/dev/lib.sh && apt_install shellcheck' shellcheck-install

lint: setup lint-deps $(LINT_TREE)
	$(BIN)/ruff check .
	shellcheck -x $(SHELL_SCRIPTS)
	cd $(LINT_TREE) && ../../$(BIN)/mypy --config-file ../../pyproject.toml -p gridbridge
	cd $(LINT_TREE) && ../../$(BIN)/lint-imports ../../pyproject.toml

unit: setup
	$(BIN)/pytest -m "not s3 and not slurm and not ssh and not ec2"

# The inner loop, meant to take under 3 minutes: lint and types, then the tests that need no
# service, real or fake (none of S3, Slurm, SSH, EC2, PBS's fake server, dask's workers,
# Chromium, PyTorch or PostgreSQL) and are not marked slow; `make test` runs them all.
CHECK_TESTS := not s3 and not slurm and not ssh and not ec2 and not pbs and not dask and not browser and not torch and not postgres and not slow
check: lint
	$(BIN)/pytest -m "$(CHECK_TESTS)"

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
