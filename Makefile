# factorflow — the two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

## A full nightly on the embedded default: SQLite + Prefect local mode + synthetic prices.
demo: install
	$(BIN)/factorflow demo $(ARGS)

## Lint, type-check core/, start a throwaway PostgreSQL on loopback (scripts/postgres.sh,
## installs Debian's postgresql if missing), find or install a headless chromium for the
## report's browser test (scripts/chromium.sh), and run the whole suite on SQLite and PostgreSQL
## in two worker processes (pytest-xdist: most slow tests wait on subprocesses and servers);
## its temporary directories (pytest's basetemp) are removed at the end, and a PostgreSQL
## server it started is stopped, its cluster removed if it made it (one already running is
## left alone).
test: install lint
	@set -e; \
	basetemp=$$(mktemp -d -t factorflow-pytest-XXXXXX); cleanup="rm -rf $$basetemp"; \
	trap 'eval "$$cleanup"' EXIT; \
	if [ -z "$$FACTORFLOW_TEST_POSTGRES_URL" ]; then \
	  pgdir="$${FACTORFLOW_PG_DIR:-/tmp/factorflow-pg}"; \
	  if [ ! -d "$$pgdir" ]; then \
	    cleanup="$$cleanup; bash scripts/postgres.sh stop; rm -rf $$pgdir"; \
	  elif ! bash scripts/postgres.sh running; then \
	    cleanup="$$cleanup; bash scripts/postgres.sh stop"; fi; \
	  if out=$$(bash scripts/postgres.sh); then eval "$$out"; \
	  else echo "make test: PostgreSQL could not be started; its tests are skipped" \
	    "(with CI=true they fail instead)" >&2; fi; \
	fi; \
	if [ -z "$$FACTORFLOW_TEST_BROWSER" ]; then \
	  if out=$$(bash scripts/chromium.sh); then eval "$$out"; \
	  else echo "make test: no headless browser; the report's browser test is skipped" \
	    "(with CI=true it fails instead)" >&2; fi; \
	fi; \
	$(BIN)/python -m pytest -q -n 2 --dist worksteal --durations=15 --basetemp="$$basetemp" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check core flows api cli tests bench migrations/env.py
	$(BIN)/mypy core
	$(BIN)/lint-imports

bench: install
	$(BIN)/python bench/symbol_batch.py $(ARGS)

clean:
	rm -rf .factorflow .pytest_cache .mypy_cache .ruff_cache
