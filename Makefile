# protoreg developer tasks. `make run` and `make test` work on a fresh machine with Python 3.11+.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTOS ?= proto_versions

.PHONY: install run test test-fast lint protos protos-check rules-doc readme bench clean

install: $(STAMP)

$(STAMP): pyproject.toml models/iris_model/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]" -e models/iris_model
	touch $(STAMP)

## Register iris_model in the default SQLite registry (re-rendering protos), then serve it in the
## foreground on 127.0.0.1:50051 until Ctrl-C. ADDRESS=0.0.0.0:50051 make run to listen elsewhere.
ADDRESS ?= 127.0.0.1:50051
run: install
	$(BIN)/protoreg --protos $(PROTOS) register iris_model
	$(BIN)/protoreg --protos $(PROTOS) serve iris_model --address $(ADDRESS)

## The whole suite, slow tests included (what CI runs).
test: install
	$(BIN)/python -m pytest -m "slow or not slow" -n 2

## The quick suite: everything but tests marked slow.
test-fast: install
	$(BIN)/python -m pytest -n 2

lint: install
	$(BIN)/ruff check protoreg registry service migrations tests models benchmarks
	$(BIN)/mypy -p protoreg

## Re-render proto_versions/ from the default registry.
protos: install
	$(BIN)/protoreg register --all
	$(BIN)/protoreg render

## Fail when proto_versions/ differs from what the registered models render to.
protos-check: install
	rm -rf $(VENV)/protos-check && mkdir -p $(VENV)/protos-check
	$(BIN)/protoreg --db sqlite:///$(VENV)/protos-check/registry.db --protos $(VENV)/protos-check/out register --all
	diff -ru $(PROTOS) $(VENV)/protos-check/out
	rm -rf $(VENV)/protos-check

## Regenerate docs/rules.md from the rule declarations (a test fails when it is stale).
rules-doc: install
	$(BIN)/protoreg rules --format markdown > docs/rules.md

## Regenerate README.md's command table from the commands' --help (a test fails when it is stale).
readme: install
	$(BIN)/python -m protoreg.readme

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis protoreg.db protoreg.db-*
