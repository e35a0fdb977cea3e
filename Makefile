# Every target bootstraps .venv from the lock file first, so a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements/dev.lock
STAMP := $(VENV)/.installed

.PHONY: demo test test-sqlite test-postgres lint bench proof fuzz lock messages clean help

help:
	@echo "make demo    - set up and run the product on SQLite: CRM, bridge and a simulated PBX ringing the agents"
	@echo "make test    - set up and run the whole test suite (SQLite, then PostgreSQL)"
	@echo "make lint    - ruff, mypy and import-linter"
	@echo "make bench   - run the benchmarks in bench/"
	@echo "make proof   - run the proof suite in proof/ (real processes; ARGS=\"--quick\" or ARGS=\"--only NAME\")"
	@echo "make lock    - re-resolve requirements/dev.lock from pyproject.toml"

$(STAMP): $(LOCK) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/callcenter demo

test: $(STAMP) messages
	$(BIN)/python -m scripts.run_tests

test-sqlite: $(STAMP) messages
	$(BIN)/python -m scripts.run_tests --only sqlite

test-postgres: $(STAMP) messages
	$(BIN)/python -m scripts.run_tests --only postgres

messages: $(STAMP)
	cd src/callcenter && ../../$(BIN)/django-admin compilemessages --ignore=.venv >/dev/null

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts proof
	CALLCENTER_DEBUG=true $(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python -m scripts.run_benches

proof: $(STAMP) messages
	$(BIN)/python -m scripts.run_proof $(ARGS)

fuzz: $(STAMP)
	$(BIN)/python -m pip install --quiet atheris
	$(BIN)/python fuzz/fuzz_ami_codec.py -max_total_time=60

lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra postgres --extra redis --generate-hashes \
		--python-version 3.11 -o $(LOCK)

clean:
	rm -rf $(VENV) var .pytest_cache
