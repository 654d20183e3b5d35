# The two entry points are `make demo` and `make test`; everything else serves them.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest install system-deps bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) system-deps

# Debian's prometheus (prometheus, promtool) and prometheus-alertmanager (amtool): the tests
# check and unit-test the alert rules, scrape a live flow and fire an alert on a real server.
# Debian's chromium: the report test opens report.html in headless Chromium and checks that
# every plot was drawn.
system-deps:
	@{ command -v promtool && command -v prometheus && command -v amtool && command -v chromium; } \
	  >/dev/null 2>&1 || { \
	  echo "installing Debian packages prometheus, prometheus-alertmanager, chromium"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	     prometheus prometheus-alertmanager chromium >/dev/null) \
	  || { echo "could not install the system packages: run as root or install them by hand"; exit 1; }; }

lint: $(STAMP)
	$(BIN)/ruff check makerflow tests benchmarks
	$(BIN)/ruff format --check makerflow tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/makerflow demo

bench: $(STAMP)
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
