PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# pytest workers (pytest-xdist). The tests mostly wait on subprocesses (servers,
# workers, CLI calls), so more workers than cores pay. Tests go to the workers one
# by one as each frees up (--dist load), longest first (tests/conftest.py), so no
# half-minute test starts last. PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 8
PYTEST_PARALLEL := -n $(PYTEST_WORKERS) --dist load

.PHONY: install install-dev demo docs test coverage lint types unit browser nginx clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP) $@

install: $(STAMP)

install-dev: $(DEV_STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

# The documentation site, into site/ (tests/e2e/test_docs_build.py builds it with --strict too).
docs: $(DEV_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# lint-imports checks the layers contract in pyproject.toml ([tool.importlinter]).
lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests benchmarks examples docs/hooks
	$(BIN)/ruff format --check src tests benchmarks examples docs/hooks
	$(BIN)/lint-imports --no-logo

types: $(DEV_STAMP)
	$(BIN)/mypy

unit: $(DEV_STAMP)
	$(BIN)/pytest -q $(PYTEST_PARALLEL)

# The dashboard tests drive Debian's chromium; install it when missing and we may.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing Debian's chromium for the dashboard tests"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else \
			echo "note: /usr/bin/chromium is missing; dashboard tests will skip (and fail when CI=true)"; \
		fi; \
	fi

# The reverse-proxy test runs docs/many-machines.md's nginx site; install Debian's
# nginx-light when no nginx is there and we may (it is started by the test only).
nginx:
	@if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing Debian's nginx-light for the reverse-proxy test"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; \
		else \
			echo "note: nginx is missing; the reverse-proxy test will skip (and fail when CI=true)"; \
		fi; \
	fi

# The suite's CPU is what bounds it on 2 cores, and tracing every line costs a
# good share of it: `make test` runs without coverage, `make coverage` with it.
# Each pytest worker imports every test module, rewriting its asserts first, and
# each test starts `headway` processes that import the package: with bytecode
# caching off (PYTHONDONTWRITEBYTECODE, set in some environments) every worker
# and every process compiled all of it again, ~5 s of CPU per worker. Here the
# caches are written, and one collection warms them before the workers start.
test: $(DEV_STAMP) browser nginx lint types
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m compileall -q src
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest -q --collect-only >/dev/null
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest -q $(PYTEST_PARALLEL)

coverage: $(DEV_STAMP) browser nginx
	$(BIN)/pytest -q $(PYTEST_PARALLEL) --cov --cov-report=term

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage* site
