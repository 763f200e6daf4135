# One entry point for people and CI. Every target creates/updates .venv as needed.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_DIR ?= demo

.PHONY: all install test test-fast lint typecheck proto check-proto hpo check-hpo demo bench attacks clean

all: test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The attacks also need matplotlib (the optional ``attacks`` extra), kept out of the node's and SDK's dependencies.
ATTACKS_STAMP := $(VENV)/.installed-attacks
$(ATTACKS_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,attacks]'
	touch $(ATTACKS_STAMP)

## test: the whole suite (unit, contract, integration, real data, e2e, statistical)
test: $(STAMP) check-proto check-hpo lint typecheck
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m 'not slow'

lint: $(STAMP)
	$(BIN)/ruff check genogate node coordinator tests bench tools attacks
	$(BIN)/ruff format --check genogate node coordinator tests bench tools attacks

typecheck: $(STAMP)
	$(BIN)/mypy genogate node coordinator attacks

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

## attacks: the attacks on the real data and synthetic cohorts through real nodes; writes attacks/out/ and, for a full
## run, docs/security/ and the tables in SECURITY.md (ATTACKS_ARGS="--quick" for a small sample; "--only timing")
ATTACKS_ARGS ?=
attacks: $(ATTACKS_STAMP)
	nice -n 10 $(BIN)/python -m attacks $(ATTACKS_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info $(DEMO_DIR) bench/work attacks/out
