# Two commands for a newcomer: `make run` and `make test`. Both install into .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint unit clean bench bench-quick bench-deps bench-store bench-rebuild

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: install
	$(BIN)/ledgerline serve

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Three test processes: most of a test's time is spent waiting on PostgreSQL, servers and threads.
# They share the server's ~100 connections; at a rare peak one is refused ("too many clients"):
# such a test, and only such a test, runs again.
TEST_PROCESSES ?= 3

test: install lint
	$(BIN)/pytest -n $(TEST_PROCESSES) --dist worksteal --durations=20 \
		--reruns 2 --only-rerun 'too many clients'

unit: install
	$(BIN)/pytest tests/unit

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

# Benchmarks (issue 6; see bench/README.md): need the local PostgreSQL and wrk (Debian's package,
# installed here when missing). bench-store and bench-rebuild run one figure each.
BENCH_STAMP := $(VENV)/.bench-installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

bench-deps: $(BENCH_STAMP)
	@command -v wrk >/dev/null || { echo "installing wrk"; $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk >/dev/null; }

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: bench-deps
	$(BIN)/python -m bench

bench-quick: bench-deps
	$(BIN)/python -m bench --quick

bench-store: bench-deps
	$(BIN)/python -m bench --only commands

bench-rebuild: bench-deps
	$(BIN)/python -m bench --only rebuild
