# camnet: `make demo` and `make test` are the two commands of the README's quick start.
# Both install what they need (Debian packages via apt-get as root, Python packages into .venv)
# and say so; a second run reuses what is installed.
SHELL := /bin/bash
.DELETE_ON_ERROR:
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := $(shell sed -e 's/\#.*//' deps/apt-packages.txt | xargs)
PYTEST_ARGS ?=

.PHONY: all install install-system install-python demo test lint typecheck unit clean

all: install

install: install-system install-python

install-system:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done | xargs); \
	if [ -n "$$missing" ]; then \
		echo "camnet: installing Debian packages: $$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "camnet: run as root (apt-get needs it) or install them yourself" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "camnet: Debian packages already installed"; fi

# pip, not python, marks a usable venv: without ensurepip (python3-venv) `venv` stops after
# creating bin/python, and the next run must try again rather than fail on a missing pip.
$(BIN)/pip:
	@echo "camnet: creating the virtual environment $(VENV)"
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/pip
	@echo "camnet: installing camnet and its Python dependencies into $(VENV)"
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install-python: $(VENV)/.installed

demo: install
	$(BIN)/python -m monitor demo

lint: install-python
	$(BIN)/ruff check monitor probes lab tests bench dashboards config
	$(BIN)/mypy

test: install lint
	$(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

unit: install-python
	$(BIN)/python -m pytest -p no:cacheprovider -m "not lab and not e2e" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache
