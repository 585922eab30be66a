# The two commands: `make demo` runs the whole product on the embedded default; `make test` passes the tests.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-12)
CLIENT_STAMP := $(VENV)/.client-installed-$(shell cat clients/python/pyproject.toml | md5sum | cut -c1-12)

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

# Tests: real PostgreSQL and Redis on this machine (bin/ensure-services starts them if needed).
TEST_DATABASE_URL ?= postgresql://postgres:postgres@127.0.0.1:5432/relabel
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
PYTEST_ARGS ?=

.PHONY: install demo test lint typecheck services contract clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: it takes the CPU wheel on disk instead of downloading CUDA builds.
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $@

# The Python client (clients/python), editable, so its tests and its `relabel` command use this checkout.
# After the project (order-only: reinstalling the project leaves the client installed).
$(CLIENT_STAMP): clients/python/pyproject.toml | $(STAMP)
	$(BIN)/pip install --quiet -e clients/python
	rm -f $(VENV)/.client-installed-*
	touch $@

install: $(STAMP) $(CLIENT_STAMP)

demo: install
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py demo

services: install
	bin/ensure-services
	bin/ensure-browser

test: install services
	DEBUG=0 SECRET_KEY=test-only-secret DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
	  ARTIFACT_DIR=$(CURDIR)/var/test-artifacts $(BIN)/pytest $(PYTEST_ARGS)

contract: install
	bin/contract

# Ruff, then the import contracts of .importlinter (make test checks them too: tests/test_import_contracts.py).
lint: install
	$(BIN)/ruff check annotator training tests bench clients
	$(BIN)/lint-imports --no-cache

typecheck: install
	$(BIN)/mypy training clients/python/src

clean:
	rm -rf $(VENV) var
