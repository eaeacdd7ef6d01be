# Two entry points for a fresh machine with Python >= 3.10 and make:
#   make lab   - set up and open the lessons in JupyterLab
#   make test  - set up and run every test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Debian packages the tests need: a real browser for the widget tests, a real terminal for the TUI test, the real
# proxies the lab is compared with; and, as root only (its experiment needs root), keepalived for the proxies' pair.
SYSTEM_PACKAGES ?= chromium tmux haproxy nginx
ROOT_PACKAGES ?= keepalived
# Where the proxies' binaries live on Debian, off many users' PATH.
SBIN_DIRS ?= /usr/sbin /sbin

.PHONY: setup system-packages lab test lint tui demo bench compiled clean

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

# As root on a Debian-like system, install what is missing with apt-get; otherwise stop at once and say how.
system-packages:
	@wanted="$(SYSTEM_PACKAGES)"; if [ "$$(id -u)" = "0" ]; then wanted="$$wanted $(ROOT_PACKAGES)"; fi; \
	missing=""; for p in $$wanted; do \
		found=""; command -v $$p >/dev/null 2>&1 && found=yes; \
		for d in $(SBIN_DIRS); do [ -x "$$d/$$p" ] && found=yes; done; \
		[ -n "$$found" ] || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
		echo "make: installing Debian packages the tests need:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing >/dev/null; \
	else \
		echo "make test needs these system packages:$$missing" >&2; \
		if command -v apt-get >/dev/null 2>&1; then \
			echo "install them with:  sudo apt-get install -y$$missing   (or run make test as root)" >&2; \
		else \
			echo "install them with your system's package manager, then run make test again" >&2; \
		fi; \
		exit 1; \
	fi

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

# Tests run in one process by default. TEST_WORKERS=2 (or auto: one per core, up to 4) runs them on several workers
# (pytest-xdist): about 11 minutes on 2 cores instead of 19, but a timing-sensitive live test can then fail when
# another worker's browser or kernel stalls its process (seen: a crash due at 1 s applied at 1.77 s).
TEST_WORKERS ?= 0
test: system-packages $(STAMP) lint
	$(BIN)/python -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,--numprocesses $(TEST_WORKERS) --maxprocesses 4)

bench: $(STAMP)
	$(BIN)/python -m spofkit bench

# The simulator's hot path compiled with mypyc into build/compiled (the same source, about 1.5x faster; a copy beside
# the source, so edits to it still count): use it with PYTHONPATH=build/compiled .venv/bin/spofkit run ... (not
# python -m from this folder, which imports the source). See bench/compile_sim.py.
compiled: $(STAMP)
	$(BIN)/python bench/compile_sim.py build/compiled

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build/compiled
