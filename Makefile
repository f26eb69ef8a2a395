# The two commands a newcomer needs: `make demo` and `make test`.
# Each creates or refreshes .venv first, so both work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
PCSC_HEADER := /usr/include/PCSC/winscard.h

.PHONY: demo test lint typecheck bench clean venv

$(BIN)/python:
	@echo "make: creating .venv (the first run takes about a minute, almost all of it pip)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Everything the tests use. pyscard builds from source against Debian's libpcsclite-dev: as root
# the Makefile installs it; without it, PC/SC is left out and its tests skip saying why
# (under REQUIRE_PCSC=1, as in CI, they fail instead).
$(STAMP): pyproject.toml | $(BIN)/python
	@if [ ! -e $(PCSC_HEADER) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "make: installing Debian's libpcsclite-dev (pyscard builds against it)"; \
	  apt-get install -y -qq --no-install-recommends libpcsclite-dev >/dev/null 2>&1 \
	  || { apt-get update -qq >/dev/null 2>&1 && \
	       apt-get install -y -qq --no-install-recommends libpcsclite-dev >/dev/null 2>&1; } \
	  || true; \
	fi
	@if [ -e $(PCSC_HEADER) ]; then extras=all,dev; else \
	  echo "make: $(PCSC_HEADER) is missing: installing without PC/SC (apt-get install libpcsclite-dev to test it); its tests will skip"; \
	  extras=station,tracker,nfc,dev; fi; \
	echo "make: installing the project and its test tools into .venv"; \
	$(BIN)/pip install --quiet -e ".[$$extras]"
	touch $(STAMP)

# The demo needs neither PC/SC nor the test tools.
$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	@echo "make: installing what the demo uses into .venv"
	$(BIN)/pip install --quiet -e '.[station,tracker]'
	touch $(DEMO_STAMP)

venv: $(STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/python -m station demo

lint: $(STAMP)
	$(BIN)/ruff check station tracker tests bench
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy --strict station/ntag424 station/emulator station/invoices station/claim station/monitor

test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
