# One entry point for people and CI. Every target creates/updates .venv as needed.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_DIR ?= demo

.PHONY: all install test test-fast fuzz lint typecheck proto check-proto hpo check-hpo lock check-lock demo bench clean

all: test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Every dependency (and the build backend) from the hashed lock; then genogate itself, without resolving again.
$(STAMP): $(BIN)/python pyproject.toml requirements.lock
	$(BIN)/python tools/lock.py --check
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

## test: the whole suite (unit, contract, integration, real data, e2e, statistical)
test: $(STAMP) check-lock check-proto check-hpo lint typecheck
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m 'not slow'

## fuzz: the long fuzz run (>= 10,000 cases per surface; `make test` runs a sample); case counts in build/
fuzz: $(STAMP)
	GENOGATE_FUZZ=long GENOGATE_FUZZ_SUMMARY=build/fuzz-cases.json nice -n 10 \
	  $(BIN)/python -m pytest -q -p no:cacheprovider --timeout=0 tests/fuzz

## lock: regenerate requirements.lock (hashes) from pyproject.toml's dependencies (needs the package index)
lock: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python tools/lock.py

## check-lock: fail when pyproject.toml's dependencies changed without `make lock`
check-lock:
	$(PYTHON) tools/lock.py --check

lint: $(STAMP)
	$(BIN)/ruff check genogate node coordinator tests bench tools
	$(BIN)/ruff format --check genogate node coordinator tests bench tools

typecheck: $(STAMP)
	$(BIN)/mypy genogate node coordinator

## proto: regenerate genogate/wire/v1 from proto/genogate/v1 (pinned grpcio-tools + mypy-protobuf)
proto: $(STAMP)
	$(BIN)/python tools/protogen.py

## check-proto: fail when the committed generated code differs from a fresh regeneration
check-proto: $(STAMP)
	$(BIN)/python tools/protogen.py --check

## hpo: rewrite node/data/hpo.json.gz (the HPO release hpo3 bundles, as ingest reads it) from the installed hpo3
hpo: $(STAMP)
	$(BIN)/python tools/hpo_snapshot.py

## check-hpo: fail when the committed HPO snapshot differs from the installed hpo3
check-hpo: $(STAMP)
	$(BIN)/python tools/hpo_snapshot.py --check

demo: $(STAMP)
	$(BIN)/genogate demo --dir $(DEMO_DIR)

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) build *.egg-info $(DEMO_DIR) bench/work
