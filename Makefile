# The two commands of the README. Everything they need is installed by scripts/install-deps.sh.
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: demo test test-sqlite test-postgres install lint bench testbed-up testbed-down

install:
	@scripts/install-deps.sh

# Every suite on SQLite, then the database-backed tests (those that reach the database: the
# integration, browser and reliability suites and the few unit tests with a database) again on
# the testbed's PostgreSQL (tests/settings.py, conftest.py).
test: install
	$(PY) -m ruff check .
	.venv/bin/lint-imports --no-cache
	$(MAKE) --no-print-directory test-sqlite test-postgres

test-sqlite:
	$(PY) -m pytest

test-postgres:
	HEADWIND_TEST_DATABASE=postgres $(PY) -m pytest

demo: install
	@scripts/demo.sh

lint:
	$(PY) -m ruff check .
	.venv/bin/lint-imports --no-cache

# Every benchmark in bench/ (bench/run.py): bench/results/<name>.json and <name>.png.
bench: install
	$(PY) bench/run.py

testbed-up: install
	$(PY) -m tests.testbed up

testbed-down:
	$(PY) -m tests.testbed down
