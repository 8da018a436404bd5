# The two commands: `make run` (everything, on the embedded default) and `make test` (every test but
# the benchmark harness's own checks, which `make bench` runs first). `make run` installs only what
# running needs (requirements.txt); `make test` adds the development tools (requirements-dev.txt).
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
PY := $(BIN)/python
TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/postgres
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: run test lint bench bench-check fuzz venv venv-run clean node-clients

PIP := $(PY) -m pip install --quiet --disable-pip-version-check

$(PY):
	$(PYTHON) -m venv $(VENV)

# Two stamps: what running needs, and on top of it the test and lint tools.
$(VENV)/.installed-run: requirements.txt | $(PY)
	$(PIP) -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed-run
	$(PIP) -r requirements-dev.txt
	touch $@

venv-run: $(VENV)/.installed-run
venv: $(VENV)/.installed-dev

run: venv-run
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py ensuredemo
	PATH="$(BIN):$$PATH" $(BIN)/honcho -f Procfile start

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Postmark's Node.js client, which the compatibility tests drive (skipped when npm is missing).
clients/node/node_modules/.installed: clients/node/package.json clients/node/package-lock.json
	@if command -v npm > /dev/null; then \
	  cd clients/node && npm ci --silent --no-audit --no-fund && touch node_modules/.installed; \
	else echo "== npm is missing: the Node.js client tests are skipped"; fi

node-clients: clients/node/node_modules/.installed

# The whole suite on SQLite, and again on PostgreSQL when it is reachable (in CI it must be) but for
# the tests marked no_db (pure Python: parsers, MIME, DKIM, SASL, templates), which gain nothing from
# a second database; the benchmark harness's checks (bench/tests) run in `make bench` instead.
# Tests whose subject does not depend on the run's database (their own SQLite installation, the
# browser layout, client snippets against a gateway) run once: once_sqlite ones in the SQLite run,
# once_postgres ones in the PostgreSQL run (in the SQLite run when PostgreSQL is not reachable).
# The two runs go at once (TEST_PARALLEL=1): each spends much of its time waiting (on child
# processes, sockets, timeouts, its database), so two of them keep two cores busier than one does.
# Each has its own DATA_DIR and database (tests on the shared RabbitMQ take turns); PostgreSQL's
# output goes to data/test-postgres.log and is shown after SQLite's. TEST_PARALLEL=0 (the default
# on a one-core machine) runs them one after the other.
TEST_PARALLEL ?= $(shell [ "$$(nproc 2> /dev/null || echo 1)" -ge 2 ] && echo 1 || echo 0)
SQLITE_TESTS = PATH="$(BIN):$$PATH" DATA_DIR=$(CURDIR)/data/test-sqlite $(PY) -m pytest \
	-m "$$sqlite_marks" $(PYTEST_ARGS)
POSTGRES_TESTS = PATH="$(BIN):$$PATH" DATA_DIR=$(CURDIR)/data/test-postgres \
	DATABASE_URL=$(TEST_POSTGRES_URL) $(PY) -m pytest -m "not no_db and not once_sqlite" $(PYTEST_ARGS)

test: venv lint node-clients
	@sqlite_marks=""; \
	if $(PY) -c "import socket; socket.create_connection(('127.0.0.1', 5432), 1)" 2>/dev/null; then \
	  postgres=1; sqlite_marks="not once_postgres"; \
	elif [ "$$CI" = "true" ]; then \
	  echo "PostgreSQL is not reachable at 127.0.0.1:5432, and CI=true requires it"; exit 1; \
	else \
	  echo "== PostgreSQL is not reachable at 127.0.0.1:5432: the PostgreSQL run is skipped"; \
	  postgres=0; \
	fi; \
	if [ $$postgres = 1 ] && [ "$(TEST_PARALLEL)" = 1 ]; then \
	  mkdir -p data; \
	  echo "== the suite on SQLite, and at the same time on PostgreSQL (data/test-postgres.log)"; \
	  $(POSTGRES_TESTS) > data/test-postgres.log 2>&1 & pid=$$!; \
	  trap 'kill $$pid 2> /dev/null' INT TERM; \
	  $(SQLITE_TESTS); sqlite_status=$$?; \
	  wait $$pid; postgres_status=$$?; \
	  echo "== the suite on PostgreSQL (data/test-postgres.log)"; cat data/test-postgres.log; \
	  echo "== SQLite: exit status $$sqlite_status; PostgreSQL: exit status $$postgres_status"; \
	  [ $$sqlite_status = 0 ] && [ $$postgres_status = 0 ]; \
	else \
	  $(SQLITE_TESTS) || exit 1; \
	  if [ $$postgres = 1 ]; then \
	    echo "== the suite on PostgreSQL"; \
	    $(POSTGRES_TESTS); \
	  fi; \
	fi

# The HTTP API's property-based tests with many more examples than `make test` runs: new random
# inputs every run, failures kept in data/hypothesis-api and tried first the next time; on SQLite,
# then on PostgreSQL when it is reachable. E.g. make fuzz-api API_FUZZ_EXAMPLES=20000.
API_FUZZ_EXAMPLES ?= 2000
FUZZ_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/fuzz_api
.PHONY: fuzz-api
fuzz-api: venv
	PATH="$(BIN):$$PATH" API_FUZZ_EXAMPLES=$(API_FUZZ_EXAMPLES) DATA_DIR=$(CURDIR)/data/fuzz-api-sqlite \
	  $(PY) -m pytest --timeout=0 api/tests/test_api_fuzz.py $(PYTEST_ARGS)
	@if $(PY) -c "import socket; socket.create_connection(('127.0.0.1', 5432), 1)" 2>/dev/null; then \
	  echo "== the same on PostgreSQL"; \
	  PATH="$(BIN):$$PATH" API_FUZZ_EXAMPLES=$(API_FUZZ_EXAMPLES) \
	    DATA_DIR=$(CURDIR)/data/fuzz-api-postgres DATABASE_URL=$(FUZZ_POSTGRES_URL) \
	    $(PY) -m pytest --timeout=0 api/tests/test_api_fuzz.py $(PYTEST_ARGS); \
	else \
	  echo "== PostgreSQL is not reachable at 127.0.0.1:5432: the PostgreSQL run is skipped"; \
	fi

# The benchmark harness's own checks, which `make test` leaves out (pyproject's norecursedirs): each
# benchmark's --quick run, the load generator, and the tests whose figures are performance goals.
bench-check: venv
	PATH="$(BIN):$$PATH" DATA_DIR=$(CURDIR)/data/bench-check $(PY) -m pytest bench/tests $(PYTEST_ARGS)

# The harness's checks, then every benchmark in turn (gateway, processing, end to end, kill run,
# bounce API, webhooks, admin, DKIM signing, the fault matrix), each in throwaway databases, then
# one PASS/MISS table; e.g. make bench BENCH_ARGS="--quick" or BENCH_ARGS="--only processing,e2e".
# Needs PostgreSQL and RabbitMQ on 127.0.0.1; the fault matrix starts private ones (initdb,
# rabbitmq-server) and, as root, a memory cgroup and a small tmpfs.
bench: venv bench-check
	PATH="$(BIN):$$PATH" $(PY) -m bench $(BENCH_ARGS)

# The generated-input tests (marked fuzz) with many more examples than make test runs; PostgreSQL is
# the stricter database, so they run there when it is reachable. FUZZ_EXAMPLES sets the count.
FUZZ_EXAMPLES ?= 2000
fuzz: venv
	@if $(PY) -c "import socket; socket.create_connection(('127.0.0.1', 5432), 1)" 2>/dev/null; then \
	  db="DATABASE_URL=$(TEST_POSTGRES_URL)"; fi; \
	env $$db FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) PATH="$(BIN):$$PATH" DATA_DIR=$(CURDIR)/data/fuzz \
	  $(PY) -m pytest -m fuzz -p no:cacheprovider $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) data clients/node/node_modules

# The topology diagram in docs/ from its text source (needs Graphviz's dot: apt-get install graphviz).
.PHONY: diagrams
diagrams:
	dot -Tsvg docs/topology.dot -o docs/topology.svg
