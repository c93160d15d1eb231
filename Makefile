# mmfree top-level Makefile: set-up, demo, tests, C-simulation, hardware builds.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv test demo clean

$(STAMP): pyproject.toml setup.cfg setup.py requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

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

# Demo: venv, C-simulation library, then text streamed from the bundled model in emulation.
# Until python/mmfree/data/bundled.safetensors exists, a small random model is made under build/demo/.
DEMO_MODEL  := python/mmfree/data/bundled.safetensors
DEMO_RANDOM := build/demo/random.safetensors
DEMO_PROMPT ?= Once upon a time
DEMO_TOKENS ?= 48
demo: $(STAMP)
	$(MAKE) csim
	@if [ -f $(DEMO_MODEL) ]; then \
	  echo "demo: bundled model $(DEMO_MODEL), emulated overlay ($(BOARD))"; \
	  $(PY) -m mmfree.cli generate --model $(DEMO_MODEL) --backend emu --board $(BOARD) \
	    --prompt "$(DEMO_PROMPT)" --max-new-tokens $(DEMO_TOKENS) --temperature 0.8 --top-k 40 --seed 0; \
	else \
	  echo "demo: $(DEMO_MODEL) does not exist yet: using a small RANDOM model ($(DEMO_RANDOM)), so the text is noise"; \
	  test -f $(DEMO_RANDOM) || $(PY) -m mmfree.generate --make-random-model $(DEMO_RANDOM); \
	  $(PY) -m mmfree.cli generate --model $(DEMO_RANDOM) --backend emu --board $(BOARD) \
	    --prompt "$(DEMO_PROMPT)" --max-new-tokens $(DEMO_TOKENS) --temperature 0.8 --top-k 40 --seed 0; \
	fi
