# aeflow: `make demo` runs the pipeline end to end, `make test` runs lint and tests.
# Both create .venv on first use and reinstall only when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# torch 2.13.0 is installed first: it is the CPU build available locally; any other
# request for torch pulls a multi-GB CUDA build. pyproject keeps a range it satisfies.
TORCH_PIN ?= torch==2.13.0

export GX_ANALYTICS_ENABLED := false
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: venv dev demo test lint format bench clean

$(VENV)/.runtime: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install $(TORCH_PIN)
	$(PIP) install -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime
	$(PIP) install -e '.[dev]'
	touch $@

venv: $(VENV)/.runtime
dev: $(VENV)/.dev

demo: $(VENV)/.runtime
	$(VENV)/bin/aeflow demo --config configs/demo.toml

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.dev
	$(PIP) install -e '.[bench]'
	@echo "See benchmarks/README.md for the individual benchmark commands."

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache
