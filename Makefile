# aeflow: `make demo` runs the pipeline end to end, `make test` runs lint and tests.
# Both create .venv on first use and reinstall only when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# torch 2.13.0 is installed first: it is the CPU build available locally; any other
# request for torch pulls a multi-GB CUDA build. pyproject keeps a range it satisfies.
TORCH_PIN ?= torch==2.13.0
# pytest processes for `make test` (pytest-xdist; 0 runs everything in one process). Test modules
# stay whole on one process (--dist loadscope): their module-scoped fixtures are built once. They
# are handed out in collection order (e2e, integration, reliability, then the many short unit
# modules), not xdist's default of most tests first, which left the one-test e2e stories to the end.
PYTEST_WORKERS ?= 2

export GX_ANALYTICS_ENABLED := false
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: venv dev demo test lint format bench browser clean

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
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder --durations=30 $(PYTEST_ARGS)

# Headless Chromium for tests/e2e/test_report_browser.py (Debian's package; needs root and apt).
# Without it `make test` still passes: that test skips and says why.
browser:
	@if command -v chromium >/dev/null 2>&1; then \
		echo "chromium: $$(command -v chromium)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	else \
		echo "chromium not installed and no root apt-get here: the report browser test will skip"; \
	fi

bench: $(VENV)/.dev
	$(PIP) install -e '.[bench]'
	@echo "See benchmarks/README.md for the individual benchmark commands."

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache
