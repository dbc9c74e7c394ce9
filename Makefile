# Two entry points for a fresh machine (see README): `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench

$(BIN)/whyllm: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: this version is a CPU build on local disk; other specs download a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $(BIN)/whyllm

setup: $(BIN)/whyllm

demo: setup
	$(BIN)/whyllm predict "The capital of France is" --target " Paris"
	$(BIN)/whyllm generate "The capital of France is" --max-new-tokens 16 --temperature 0.8 --seed 0 --samples 4

test: setup
	@# browser tests drive Debian's chromium (Playwright cannot download browsers offline)
	@command -v chromium >/dev/null 2>&1 || (DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "note: could not install chromium (apt-get, as root); the e2e browser tests will skip"
	@# the accessibility scan injects axe-core (npm) into the page; artifacts/ is ignored by git
	@test -f artifacts/npm/node_modules/axe-core/axe.min.js || npm install -s --prefix artifacts/npm --no-save \
	  --no-audit --no-fund axe-core@4.14.1 || echo "note: could not install axe-core with npm; the axe scan will skip"
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests bench

bench: setup
	$(BIN)/python bench/core.py
