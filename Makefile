# The two commands: `make run` (everything, on the embedded default) and `make test` (every test).
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
PY := $(BIN)/python
TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/postgres
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: run test lint bench venv clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

run: venv
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py ensuredemo
	PATH="$(BIN):$$PATH" $(BIN)/honcho -f Procfile start

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The whole suite on SQLite, then again on PostgreSQL when it is reachable (in CI it must be).
test: venv lint
	PATH="$(BIN):$$PATH" DATA_DIR=$(CURDIR)/data/test-sqlite $(PY) -m pytest $(PYTEST_ARGS)
	@if $(PY) -c "import socket; socket.create_connection(('127.0.0.1', 5432), 1)" 2>/dev/null; then \
	  echo "== the same suite on PostgreSQL"; \
	  PATH="$(BIN):$$PATH" DATA_DIR=$(CURDIR)/data/test-postgres DATABASE_URL=$(TEST_POSTGRES_URL) \
	    $(PY) -m pytest $(PYTEST_ARGS); \
	elif [ "$$CI" = "true" ]; then \
	  echo "PostgreSQL is not reachable at 127.0.0.1:5432, and CI=true requires it"; exit 1; \
	else \
	  echo "== PostgreSQL is not reachable at 127.0.0.1:5432: the PostgreSQL run is skipped"; \
	fi

# Every benchmark in turn (gateway, processing, end to end, kill run, bounce API, webhooks, admin),
# each in throwaway databases, then one PASS/MISS table; e.g. make bench BENCH_ARGS="--quick" or
# BENCH_ARGS="--only processing,e2e". Needs PostgreSQL and RabbitMQ on 127.0.0.1.
bench: venv
	PATH="$(BIN):$$PATH" $(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) data
