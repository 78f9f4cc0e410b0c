# The two commands of the README. Everything they need is installed by scripts/install-deps.sh.
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: demo test install lint testbed-up testbed-down

install:
	@scripts/install-deps.sh

test: install
	$(PY) -m ruff check .
	.venv/bin/lint-imports --no-cache
	$(PY) -m pytest

demo: install
	@scripts/demo.sh

lint:
	$(PY) -m ruff check .
	.venv/bin/lint-imports --no-cache

testbed-up: install
	$(PY) -m tests.testbed up

testbed-down:
	$(PY) -m tests.testbed down
