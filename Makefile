# Two commands set the project up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-postgres test-chromium lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/quickstart.py

lint: $(STAMP)
	$(BIN)/ruff check raypipe tests benchmarks examples tools
	$(BIN)/ruff format --check raypipe tests benchmarks examples tools

typecheck: $(STAMP)
	$(BIN)/mypy

# PostgreSQL for the service store's tests (tests/service): a private cluster on
# 127.0.0.1:$(TEST_PG_PORT), its data under /tmp, owned by the postgres user (initdb refuses
# root), started once and reused; the postgresql package is installed with apt-get when the
# machine has no server. Set RAYPIPE_TEST_POSTGRES_URL to use a server of your own instead.
TEST_PG_PORT ?= 54329
TEST_PG_DIR ?= /tmp/raypipe-test-postgres-$(TEST_PG_PORT)
ifeq ($(origin RAYPIPE_TEST_POSTGRES_URL),environment)
TEST_PG_OWN := 1
else
export RAYPIPE_TEST_POSTGRES_URL := postgresql://raypipe:raypipe@127.0.0.1:$(TEST_PG_PORT)/raypipe_test
endif

test-postgres:
ifdef TEST_PG_OWN
	@echo "test-postgres: using RAYPIPE_TEST_POSTGRES_URL from the environment"
else
	@set -e; \
	bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }; \
	pg=$$(bindir); \
	if [ -z "$$pg" ] || [ ! -x "$$pg/postgres" ]; then \
		if [ "$$(id -u)" != 0 ]; then \
			echo "test-postgres: no PostgreSQL server here; install the postgresql package" \
				"(as root: apt-get install postgresql) or set RAYPIPE_TEST_POSTGRES_URL" >&2; \
			exit 1; \
		fi; \
		echo "test-postgres: installing PostgreSQL (apt-get install postgresql)"; \
		apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
		pg=$$(bindir); \
	fi; \
	if [ "$$(id -u)" = 0 ]; then as_pg="runuser -u postgres --"; else as_pg=""; fi; \
	cd /; \
	if ! $$pg/pg_isready -q -h 127.0.0.1 -p $(TEST_PG_PORT); then \
		if [ ! -s $(TEST_PG_DIR)/PG_VERSION ]; then \
			echo "test-postgres: creating a cluster in $(TEST_PG_DIR)"; \
			mkdir -p $(TEST_PG_DIR); \
			if [ -n "$$as_pg" ]; then chown postgres: $(TEST_PG_DIR); fi; \
			chmod 700 $(TEST_PG_DIR); \
			$$as_pg $$pg/initdb -D $(TEST_PG_DIR) -U postgres -E UTF8 --locale=C --no-sync \
				--auth-local=trust --auth-host=scram-sha-256 >/dev/null; \
		fi; \
		echo "test-postgres: starting PostgreSQL on 127.0.0.1:$(TEST_PG_PORT)"; \
		$$as_pg $$pg/pg_ctl -D $(TEST_PG_DIR) -l $(TEST_PG_DIR)/server.log -w -t 60 \
			-o "-p $(TEST_PG_PORT) -c listen_addresses=127.0.0.1 -k $(TEST_PG_DIR)" \
			-o "-c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >/dev/null; \
	fi; \
	psql="$$as_pg $$pg/psql -X -q -h $(TEST_PG_DIR) -p $(TEST_PG_PORT) -U postgres -d postgres -v ON_ERROR_STOP=1"; \
	$$psql -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'raypipe'" | grep -q 1 || \
		$$psql -c "CREATE ROLE raypipe LOGIN PASSWORD 'raypipe'"; \
	$$psql -tAc "SELECT 1 FROM pg_database WHERE datname = 'raypipe_test'" | grep -q 1 || \
		$$psql -c "CREATE DATABASE raypipe_test OWNER raypipe"
endif

# Chromium for the UI's browser tests (tests/ui): Debian's chromium package, installed with
# apt-get when /usr/bin/chromium is missing; Playwright drives it (never a browser download).
test-chromium:
	@set -e; \
	if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" != 0 ]; then \
			echo "test-chromium: no /usr/bin/chromium; install the chromium package" \
				"(as root: apt-get install chromium)" >&2; \
			exit 1; \
		fi; \
		echo "test-chromium: installing Chromium (apt-get install chromium)"; \
		apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

test: lint typecheck test-postgres test-chromium
	$(BIN)/python -m pytest

# raypipe against Prefect, Dagster, kfp.local, Ray Workflows and raw Ray (benchmarks/README.md):
# writes benchmarks/results.md and results.png; Prefect and Ray Workflows get virtual
# environments of their own under ~/.cache/raypipe-bench, made on first use.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/suite.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
