# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# sslyze (the TLS scan of tests/attacks/test_attacks_tls.py) in a venv of its own: it pins a cryptography
# older than the one Traza pins, so it cannot live in .venv (the test runs it as a separate process)
SSLYZE_VENV  := .venv-sslyze
SSLYZE_VERSION := 6.3.1
SSLYZE_STAMP := $(SSLYZE_VENV)/.installed-$(SSLYZE_VERSION)

$(SSLYZE_STAMP):
	test -x $(SSLYZE_VENV)/bin/python || $(PYTHON) -m venv $(SSLYZE_VENV)
	$(SSLYZE_VENV)/bin/python -m pip install --quiet 'sslyze==$(SSLYZE_VERSION)'
	touch $(SSLYZE_STAMP)

venv: $(STAMP) $(SSLYZE_STAMP)

demo: $(STAMP)
	$(BIN)/traza demo

lint: $(STAMP)
	$(BIN)/ruff check gateway adapters tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) $(SSLYZE_STAMP)
	$(BIN)/pytest

test: lint typecheck unit

clean:
	rm -rf $(VENV) $(SSLYZE_VENV) .pytest_cache .mypy_cache .ruff_cache
