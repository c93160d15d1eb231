# mmfree top-level Makefile: set-up, demo, tests, C-simulation, hardware builds.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMP  := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: venv test demo clean

# The venv itself; the interpreter must be Python 3.11 or newer (numpy 2.4 of the pinned sets).
$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "make: $(PYTHON) is Python %d.%d; mmfree on a host needs Python 3.11 or newer (give one: make PYTHON=python3.11 ...)" % sys.version_info[:2])'
	@echo "[setup] creating $(VENV) with $$($(PYTHON) --version)"
	$(PYTHON) -m venv $(VENV) || { echo "make: python3 -m venv failed (Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 2; }

# Demo set: numpy, safetensors, tokenizers (about 40 MB; no torch), then the package (editable).
$(DEMO_STAMP): $(VENV)/bin/python pyproject.toml setup.cfg setup.py requirements-demo.txt
	@echo "[setup] installing the demo set (requirements-demo.txt: numpy, safetensors, tokenizers; no torch)"
	$(PIP) install --progress-bar on -r requirements-demo.txt
	@echo "[setup] installing mmfree itself (editable)"
	$(PIP) install --quiet --no-deps -e .
	touch $@

# Full pinned set for tests and training (requirements-dev.txt: adds torch, matplotlib, pytest, ...).
$(STAMP): $(VENV)/bin/python pyproject.toml setup.cfg setup.py requirements-dev.txt requirements-demo.txt
	@echo "[setup] installing the full pinned set (requirements-dev.txt, with torch: about 1 GB, a few minutes)"
	$(PIP) install --progress-bar on -r requirements-dev.txt
	$(PIP) install --quiet --no-deps -e .
	touch $@ $(DEMO_STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

# Board compatibility (run by .ci/run after `make test`; venvs in .cache/, made once): the package installs
# with the board images' pip 22.0.2 / setuptools 59.6.0 (the documented command, with and without build
# isolation), the board-side tests pass under numpy 1.26 and Python 3.10, and the driver tests pass through
# the real pynq 3.0.1 and 4.0.0 (DefaultIP, MMIO, allocate). scripts/board_compat.sh says what each step does.
.PHONY: board-compat
board-compat: $(STAMP)
	$(MAKE) csim
	HOSTPY=$(PY) scripts/board_compat.sh

clean:
	rm -rf $(VENV) .pytest_cache

# C-simulation of the HLS kernels (g++): build/csim/$(BOARD)/libmmfree_csim.so + testbenches.
BOARD ?= kv260
.PHONY: csim hls
csim:
	$(MAKE) -C hls csim BOARD=$(BOARD) PY=$(abspath $(PY))

# Census of the HLS code (g++, no vendor tool): operators, banks, IIs, bursts and resources for BOARD;
# prints the tables and writes build/census/$(BOARD).json (python/mmfree/census.py).
.PHONY: census
census: $(STAMP)
	@$(PY) -m mmfree.census --board $(BOARD)

# The same library under UBSan (float-to-int casts included), aborting on the first report;
# tests/test_csim_ubsan.py builds and runs it in `make test`.
.PHONY: csim-ubsan
csim-ubsan:
	$(MAKE) -C hls ubsan BOARD=$(BOARD) PY=$(abspath $(PY))

# Vitis HLS (workstation only): csim, csynth, cosim, IP export for BOARD (kv260, zcu104, pynq-z2).
hls:
	$(MAKE) -C hls hls BOARD=$(BOARD)

# Vivado overlay (workstation only): make hls, then block design -> .bit/.hwh for BOARD, copied to
# python/mmfree/overlays/. Stops at once, naming Vivado, where Vivado is not installed.
.PHONY: overlay
overlay:
	@test -f overlay/$(BOARD)/makefile || { echo "make overlay: no overlay/$(BOARD)/ (boards: $$(ls overlay | grep -v -e common -e scripts | tr '\n' ' '))" >&2; exit 2; }
	@$(MAKE) --no-print-directory -C overlay/$(BOARD) all $(if $(wildcard $(PY)),PY=$(abspath $(PY)))

# Demo: the demo set (no torch), the C-simulation library, then text streamed from the bundled model
# (25M parameters, trained on Debian software documentation: docs/model-card.md) in emulation.
DEMO_MODEL  := python/mmfree/data/bundled.safetensors
DEMO_PROMPT ?= Once upon a time
DEMO_TOKENS ?= 48
demo: $(DEMO_STAMP)
	@echo "[demo] building the C-simulation library (g++; the HLS kernels compiled for this host)"
	@mkdir -p build && $(MAKE) --no-print-directory csim > build/demo-csim.log 2>&1 || { cat build/demo-csim.log; exit 2; }
	@echo "[demo] model: $(DEMO_MODEL), the bundled 25M-parameter MatMul-free model trained on Debian"
	@echo "[demo]   software documentation (docs/model-card.md): fluent-looking text that means nothing."
	@echo "[demo] backend: emu, the $(BOARD) overlay emulated on this CPU; its tokens/s are this host's, not the FPGA's."
	@echo "[demo] sampling: temperature 0.8, top-k 40, seed 0; $(DEMO_TOKENS) new tokens after \"$(DEMO_PROMPT)\""
	@echo
	@$(PY) -m mmfree.cli generate --model $(DEMO_MODEL) --backend emu --board $(BOARD) \
	  --prompt "$(DEMO_PROMPT)" --max-new-tokens $(DEMO_TOKENS) --temperature 0.8 --top-k 40 --seed 0
