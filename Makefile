# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: soak order demo test lint typecheck unit venv clean constraints

# pyproject.toml gives version ranges; constraints.txt the exact versions `make demo` and `make test`
# install, so both stay reproducible (`make constraints` writes it again from the working .venv)
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

constraints:
	{ echo "# Exact versions of every package of .venv (made by \`make constraints\`: pip freeze, without Traza)."; \
	  echo "# \`make\` installs with them: pip install -c constraints.txt -e '.[test]'"; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v -i '^traza[ =@]'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

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

# the suite on two workers (pytest-xdist): on two cores it takes about 60 % of the time of one, since
# the end-to-end tests spend much of theirs waiting on their node processes. Each worker runs its share of
# a file in the file's order. Not --dist loadfile/loadscope/loadgroup: those key tests by node id, and
# schemathesis gives every API operation of a test the same one, so all but one would silently not run.
# TEST_WORKERS=0 runs it in one process, as plain `pytest` does
TEST_WORKERS ?= 2

unit: $(STAMP) $(SSLYZE_STAMP)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist load

test: lint typecheck unit

# the suite with each file's tests in reverse order (tests/kit/reverse.py): finds a test that passes only
# after those above it. The dashboard tests are steps through one scene (their docstring) and stay out
order: $(STAMP) $(SSLYZE_STAMP)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist load -p kit.reverse --ignore=tests/ui/test_ui_dashboard.py

# the long runs deselected from the suite (issue #13: 5,000 messages through a replicated hub with failovers)
soak: $(STAMP)
	$(BIN)/pytest -m soak -s tests/e2e/test_e2e_ha.py

clean:
	rm -rf $(VENV) $(SSLYZE_VENV) .pytest_cache .mypy_cache .ruff_cache
