# The single entry point for people, CI and the README.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest emulator worker beat flower bench bench-full clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m worker.demo

test: lint pytest

lint: $(STAMP)
	$(BIN)/ruff check schemas worker tasks emulator bench tests
	$(BIN)/ruff format --check schemas worker tasks emulator bench tests
	$(BIN)/mypy schemas worker tasks

pytest: $(STAMP)
	$(BIN)/pytest -q

emulator: $(STAMP)
	$(BIN)/ajobs emulator --port $${PORT:-8765}

worker: $(STAMP)
	$(BIN)/celery -A worker.app worker --loglevel=INFO

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
