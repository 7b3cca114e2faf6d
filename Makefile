# The two commands a new machine needs:  make demo  and  make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-sqlite bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: setup
	PREFECT_HOME=$${PREFECT_HOME:-$(CURDIR)/.kiemdiem/prefect} PREFECT_SERVER_ANALYTICS_ENABLED=false \
	  $(BIN)/kiemdiem demo

# Runs the whole suite on SQLite and PostgreSQL; PostgreSQL tests are skipped (with a notice)
# when no server answers on 127.0.0.1:5432, browser tests when /usr/bin/chromium is missing.
test: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup -p no:cacheprovider $(PYTEST_ARGS)

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .kiemdiem out
