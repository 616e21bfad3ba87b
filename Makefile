# Each target creates .venv and installs first, so they work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench bench-all lint install clean browser package-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/talkface demo

# Browser tests need Debian's chromium; install it when missing (root, as on CI). Without it they skip
# locally and fail under CI=true.
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq chromium chromium-driver >/dev/null; } || echo "chromium not installed: browser tests skip"

test: $(VENV)/.installed-test browser
	$(BIN)/ruff check talkface tests benchmarks scripts
	$(BIN)/python -m pytest

# The speed group: every figure of the README's speed table in one run (an idle machine; each figure
# records its load). bench-all adds the slow quality and experiment benchmarks.
bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/run_all.py --group speed

bench-all: $(VENV)/.installed-test
	$(BIN)/python benchmarks/run_all.py --group all

# The package as a user installs it: a wheel (not editable) in a clean venv, run from outside the source
# tree, must find its package data and split lists and run the quick demo end to end.
WHEEL_DIR := build/wheel-check
package-check: $(VENV)/.installed-test
	rm -rf $(WHEEL_DIR) build/lib
	$(BIN)/pip wheel . --no-deps --no-build-isolation -q -w $(WHEEL_DIR)
	$(PYTHON) -m venv $(WHEEL_DIR)/venv
	$(WHEEL_DIR)/venv/bin/pip install -q $(WHEEL_DIR)/talkface-*.whl
	cd $(WHEEL_DIR) && venv/bin/talkface demo --quick --out demo-quick
	test -f $(WHEEL_DIR)/demo-quick/SUMMARY.md
	grep -q '^Shipped: ' $(WHEEL_DIR)/demo-quick/SUMMARY.md  # the wheel carries the shipped model

lint: $(VENV)/.installed-test
	$(BIN)/ruff check talkface tests benchmarks scripts

clean:
	rm -rf $(VENV) build *.egg-info
