# The two set-up commands on a fresh machine that has only Python, pip and make:
#   make demo   # install, then ingest docs/ into a temporary store and answer three questions
#   make test   # install with dev tools, then lint, type-check and run the test suite
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(PYTHON) -m uv
endif

.PHONY: uv install install-dev demo test lint typecheck pytest bench

uv:
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || \
		$(PYTHON) -m pip install --quiet uv

install: uv
	$(UV) sync --frozen --no-dev --compile-bytecode

install-dev: uv
	$(UV) sync --frozen --compile-bytecode

demo: install
	$(UV) run --frozen --no-dev tether demo

lint: install-dev
	$(UV) run --frozen ruff check src tests benchmarks

typecheck: install-dev
	$(UV) run --frozen mypy src

pytest: install-dev
	$(UV) run --frozen pytest -q

test: lint typecheck pytest

bench: install-dev
	$(UV) run --frozen python benchmarks/run_all.py
