# The two commands: `make run` (serve the product) and `make test` (the whole suite). See README.md.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
# Settings for manage.py calls that need no server (a secret must be set for settings to load).
MANAGE := DJANGO_SECRET_KEY=$${DJANGO_SECRET_KEY:-make-only-not-secret} DJANGO_SETTINGS_MODULE=config.settings.local $(PY) manage.py

.PHONY: help bootstrap run demo test bench lint requirements messages schema clean-var

help:
	@echo "make run        install what is missing, then serve admin, API and OCPP on PORT (default 8000);"
	@echo "                DEMO_CHARGERS=N also runs N simulated demo chargers that connect and charge"
	@echo "make demo       make run with DEMO_CHARGERS=10 (unless set)"
	@echo "make test       make lint, then ensure PostgreSQL+PostGIS and Redis and run the whole suite"
	@echo "make bench      run the benchmarks (python -m benchmarks; BENCH_ARGS=... passes options)"
	@echo "make lint       ruff check, ruff format --check, lint-imports (import contracts), mypy against its baseline"
	@echo "make requirements  pin requirements/*.in into *.txt with hashes (REQ_ARGS=\"--upgrade-package X\")"
	@echo "make messages   update the de/fr translation catalogues under locale/"
	@echo "make schema     regenerate the committed driver API schema (config/openapi.yaml)"
	@echo "make clean-var  stop project-local servers and delete var/"

bootstrap:
	@scripts/bootstrap.sh

run: bootstrap
	@exec scripts/run.sh

# `make run` with the demo network alive: DEMO_CHARGERS (default 10) simulated demo chargers, charging.
demo: bootstrap
	@DEMO_CHARGERS="$${DEMO_CHARGERS:-10}" exec scripts/run.sh

# `make lint` first (CI runs .ci/run -> make test); then pytest's exit status decides. Pass options with
# PYTEST_ARGS="-k health -x"; LINT=0 skips the lint step for a quick targeted run while editing.
test: bootstrap
	@if [[ "$${LINT:-1}" != 0 ]]; then $(MAKE) --no-print-directory lint; fi
	@source scripts/services.sh test; exec $(VENV)/bin/pytest $(PYTEST_ARGS)

bench: bootstrap
	@if [[ ! -f benchmarks/__main__.py ]]; then \
		echo "make bench: benchmarks/__main__.py does not exist (no benchmark to run)" >&2; exit 1; fi
	@# The bench uses the loopback servers (BENCH_DATABASE_URL / BENCH_REDIS_URL override): make sure they answer.
	@env -u DATABASE_URL -u REDIS_URL -u CACHE_URL scripts/services.sh test >/dev/null
	@exec $(PY) -m benchmarks $(BENCH_ARGS)

# The gates: each must pass. mypy's known errors are in mypy-baseline.txt, which may only shrink
# (scripts/mypy-gate.sh --shrink after fixing some); the import contracts are in pyproject.toml.
lint: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-logo
	scripts/mypy-gate.sh

# Edit requirements/base.in (what production imports) or dev.in (tools), then run this: pip-compile keeps
# every pin it can and writes the hashes. The next make bootstrap installs the result.
PIP_COMPILE := cd requirements && CUSTOM_COMPILE_COMMAND="make requirements" ../$(VENV)/bin/pip-compile -q \
	--generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links $(REQ_ARGS)
requirements: bootstrap
	$(PIP_COMPILE) -o base.txt base.in
	$(PIP_COMPILE) -o dev.txt dev.in

messages: bootstrap
	mkdir -p locale
	$(MANAGE) makemessages -l de -l fr --ignore '.venv/*' --ignore 'var/*' --ignore 'node_modules/*'

schema: bootstrap
	$(MANAGE) spectacular --validate --fail-on-warn --lang en --file config/openapi.yaml

clean-var:
	scripts/services.sh stop
	rm -rf var
