# The single entry point for people, CI and the README.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: bytecode demo test lint typecheck pytest emulator worker beat flower metrics browser bench bench-full chaos soak clean \
	deploy-check deploy-smoke bench-redis

# uv installs the project's dependencies several times faster than pip (13 s against 31-61 s from a
# cold venv here); pip only fetches uv itself. --compile-bytecode writes the .pyc files at install, as pip
# does: an interpreter never writes them where PYTHONDONTWRITEBYTECODE is set (these machines set it), and
# without them every process compiles what it imports again (`import worker.app`: 5.0 s of CPU, 1.8 s with).
UV := $(BIN)/python -m uv pip install --quiet --compile-bytecode --python $(BIN)/python

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv
	$(UV) -e '.[dev]'
	touch $(STAMP)

# The checkout's own modules, compiled likewise before the processes a run starts import them (only what
# changed since the last time is compiled again; __pycache__ is ignored by git).
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q -j 0 schemas worker tasks devkit emulator bench scripts tests

demo: bytecode
	$(BIN)/python -m devkit.demo

test: lint browser deploy-check pytest

# The browser check (tests/integration/test_flower.py) needs Chromium: install it where we can (root with
# apt), and never fail the run when we cannot; the test skips itself then.
browser:
	-@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1; } || \
		echo "chromium could not be installed: the Flower browser check will be skipped"

lint: $(STAMP)
	$(BIN)/ruff check schemas worker tasks devkit emulator bench scripts tests
	$(BIN)/ruff format --check schemas worker tasks devkit emulator bench scripts tests
	$(BIN)/mypy schemas worker tasks devkit scripts
	$(BIN)/lint-imports

# tests/deploy/ runs in deploy-check, alone: its stacks of ten processes would crowd the timing of the rest.
pytest: bytecode
	$(BIN)/pytest -q -n 4 --maxschedchunk=1 --ignore=tests/deploy

# The volume tests (marked soak) at their full size (not part of make test, where they run smaller): a
# thousand jobs shared by three workers, two hundred through a Redis restart or an API storm, a hundred
# through a Sentinel failover.
soak: bytecode
	$(BIN)/pytest -q -n 4 --maxschedchunk=1 --ignore=tests/deploy --soak -m soak

emulator: $(STAMP)
	$(BIN)/python -m emulator --port $${PORT:-8765}

# The commands an operator runs; extra Celery options follow them (ajobs worker --concurrency 4 -Q runs).
worker: $(STAMP)
	$(BIN)/ajobs worker

# Any number of beats may run: redbeat's lock in Redis lets one fire the sweeps.
beat: $(STAMP)
	$(BIN)/ajobs beat

# Needs AJ_FLOWER_USER and AJ_FLOWER_PASSWORD (or AJ_FLOWER_DEV=1 on a developer's machine).
flower: $(STAMP)
	$(BIN)/ajobs flower

metrics: $(STAMP)
	$(BIN)/ajobs metrics

# Benchmarks: the bench extra (matplotlib for the plots, py-spy for profiles) on top of the dev one.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(UV) -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# S1-S4 at the quick sizes (under 5 minutes); writes bench/results/*.json, the plots and bench/RESULTS.md.
# The emulator has a core of its own; the contender (Redis, the workers, the reader) may use both.
bench: bytecode $(BENCH_STAMP)
	$(BIN)/python -m bench.runner --quick --share-cores

# The large sizes (under 30 minutes): S1 at 10,000 runs, the poll-policy frontier, the naive Celery ladder.
bench-full: bytecode $(BENCH_STAMP)
	$(BIN)/python -m bench.runner --full --share-cores

# Redis commands and Redis CPU per job of each kind (INFO commandstats and INFO cpu before and after), which
# docs/scaling.md builds on; writes bench/results/redis_cost.json and bench/RESULTS.md (a few minutes).
bench-redis: bytecode $(BENCH_STAMP)
	$(BIN)/python -m bench.redis_cost

# The deployment files (deploy/, docs/deploy.md), checked without a container engine: the Dockerfile's lint,
# the compose file against the compose specification's JSON Schema, the Kubernetes manifests against the
# API's schemas (strict: unknown fields fail), KEDA's resources against their vendored schemas, the systemd
# units with systemd-analyze (skipped where it is absent), and env.example against the settings object.
# Then tests/deploy/, on its own (about a minute and a half): the files against the code, and every service
# started as the files say, as processes, with jobs run through them.
KEDA_SCHEMA := deploy/kubernetes/keda/schema

deploy-check: bytecode
	$(BIN)/hadolint deploy/Dockerfile
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml
	$(BIN)/kubernetes-validate --strict --quiet deploy/kubernetes/*.yaml deploy/kubernetes/webhooks/*.yaml
	$(BIN)/check-jsonschema --schemafile $(KEDA_SCHEMA)/scaledobject.json deploy/kubernetes/keda/worker-*.yaml
	$(BIN)/check-jsonschema --schemafile $(KEDA_SCHEMA)/triggerauthentication.json \
		deploy/kubernetes/keda/trigger-authentication.yaml
	$(BIN)/python scripts/verify_units.py
	$(BIN)/python scripts/env_example.py --check
	$(BIN)/pytest -q tests/deploy

# For a machine with Docker (with the compose plugin) or Podman (with podman-compose or docker-compose):
# builds the image, brings the `try` profile up, runs the demo's jobs through it, tears it all down.
# It cannot run on a machine without a container engine or registry access (this project's CI): it says so
# and fails. ENGINE=podman picks Podman when both are installed.
deploy-smoke: $(STAMP)
	$(BIN)/python scripts/deploy_smoke.py $${ENGINE:+--engine $$ENGINE}

# The chaos soak (not part of make test): 2,000 jobs while workers and Redis are SIGKILLed and the emulator
# injects faults; writes bench/results/chaos.json and its RESULTS.md section, exits 1 when a check fails.
# Options follow in CHAOS_ARGS, e.g. make chaos CHAOS_ARGS='--jobs 200'.
chaos: bytecode
	$(BIN)/python -m bench.chaos $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
