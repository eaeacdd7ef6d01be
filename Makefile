# Two entry points for a fresh machine with Python >= 3.10 and make:
#   make lab   - set up and open the lessons in JupyterLab
#   make test  - set up and run every test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup lab test lint tui demo bench clean

$(STAMP): pyproject.toml jupyterlab-overrides.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[all]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	# JupyterLab settings for the lessons: no news pop-up, no calls to the internet for updates.
	mkdir -p $(VENV)/share/jupyter/lab/settings
	cp jupyterlab-overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	touch $(STAMP)

setup: $(STAMP)

lab: $(STAMP)
	$(BIN)/spofkit lab

tui: $(STAMP)
	$(BIN)/spofkit tui

demo: $(STAMP)
	$(BIN)/spofkit demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy spofkit

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/failover.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
