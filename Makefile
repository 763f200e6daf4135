# One entry point for people and CI. Every target creates/updates .venv as needed.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_DIR ?= demo

.PHONY: all install test test-fast fuzz lint typecheck proto check-proto hpo check-hpo lock check-lock demo bench bench-quick attacks clean

all: test

$(BIN)/python:
	@echo "==> creating $(VENV) ($(PYTHON)) and upgrading pip"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Every dependency (and the build backend) from the hashed lock; then genogate itself, without resolving again.
# pip lists each package as it goes (no --quiet: the step takes a while and should be seen to move).
$(STAMP): $(BIN)/python pyproject.toml requirements.lock
	@echo "==> [1/3] checking that requirements.lock matches pyproject.toml"
	$(BIN)/python tools/lock.py --check
	@echo "==> [2/3] installing $$(grep -c '^[A-Za-z0-9].*==' requirements.lock) pinned packages from requirements.lock (hash-checked; about a minute the first time)"
	$(BIN)/python -m pip install --require-hashes -r requirements.lock
	@echo "==> [3/3] installing genogate itself (editable)"
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)
	@echo "==> installed: $(BIN)/genogate, genogate-node, genogate-coordinator, genogate-demo"

install: $(STAMP)

# The attacks also need matplotlib (the optional ``attacks`` extra), kept out of the node's and SDK's dependencies.
ATTACKS_STAMP := $(VENV)/.installed-attacks
$(ATTACKS_STAMP): $(STAMP) requirements-attacks.lock
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-attacks.lock
	touch $(ATTACKS_STAMP)

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
	$(BIN)/ruff check genogate genogate_demo node coordinator tests bench tools attacks
	$(BIN)/ruff format --check genogate genogate_demo node coordinator tests bench tools attacks

typecheck: $(STAMP)
	$(BIN)/mypy genogate genogate_demo node coordinator attacks

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
	$(BIN)/genogate-demo --dir $(DEMO_DIR)

## bench: every section of BENCHMARKS.md, the federation against its floor last (its plot needs matplotlib)
bench: $(ATTACKS_STAMP)
	$(BIN)/python -m bench.run

## bench-quick: a small federation section only (under 3 minutes), to bench/work/federation-quick.{md,json}
bench-quick: $(ATTACKS_STAMP)
	$(BIN)/python -m bench.run --only federation --quick

## attacks: the attacks on the real data and synthetic cohorts through real nodes; writes attacks/out/ and, for a full
## run, docs/security/ and the tables in SECURITY.md (ATTACKS_ARGS="--quick" for a small sample; "--only timing")
ATTACKS_ARGS ?=
attacks: $(ATTACKS_STAMP)
	nice -n 10 $(BIN)/python -m attacks $(ATTACKS_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info $(DEMO_DIR) bench/work attacks/out
