# The two commands of the README: `make demo` and `make test`. Both set everything up
# on a fresh machine first (Debian packages, a virtualenv with the project installed).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/lottery
# Without a GPU, PyPI's Linux torch wheel is still the CUDA build (several GB to download);
# PyTorch's CPU index has the CPU build: make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

.PHONY: demo test lint bench system-deps browser-deps setup clean

system-deps:
	@command -v dot >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends graphviz; }

# The dashboard's tests drive Debian's Chromium headless (through Playwright for Python,
# never `playwright install`, which downloads a browser of its own).
browser-deps:
	@test -x /usr/bin/chromium || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) -e ".[dev]"
	touch $(STAMP)

setup: system-deps $(STAMP)

demo: setup
	$(BIN)/python examples/lottery_ticket.py --directory $(DEMO_DIR)
	$(BIN)/python examples/analyse_lottery.py --directory $(DEMO_DIR)

test: setup browser-deps
	$(BIN)/ruff check dagger_wf tests examples bench
	$(BIN)/ruff format --check dagger_wf tests examples bench
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup
	$(BIN)/python bench/bench_core.py

clean:
	rm -rf $(VENV) runs
