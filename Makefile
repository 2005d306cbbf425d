# Two commands on a fresh machine: `make run` and `make test`. Both create .venv and install
# exactly the versions in constraints.txt first. The editable install is in "compat" mode (a
# path in a .pth file): mypy, checking a plugin package against om_plugins, cannot follow
# setuptools' default editable finder.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint format install services browser clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt \
		--config-settings editable_mode=compat -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

## Run the service on its embedded defaults: SQLite file, in-process bus, paper exchange;
## it prints the console's URL.
run: $(STAMP)
	$(BIN)/om run

services:
	@scripts/ensure-services.sh

## Debian's chromium for the console's browser tests (installed when missing, if possible).
browser:
	@scripts/ensure-browser.sh

## The whole test suite (PostgreSQL and RabbitMQ tests included).
test: $(STAMP) services browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache order_manager.db* artifacts
