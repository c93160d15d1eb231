# mmfree top-level Makefile: set-up, demo, tests, C-simulation, hardware builds.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv test demo clean

$(STAMP): pyproject.toml requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache

# C-simulation of the HLS kernels (g++): build/csim/$(BOARD)/libmmfree_csim.so + testbenches.
BOARD ?= kv260
.PHONY: csim hls
csim:
	$(MAKE) -C hls csim BOARD=$(BOARD) PY=$(abspath $(PY))

# Vitis HLS (workstation only): csim, csynth, cosim, IP export for BOARD (kv260, zcu104, pynq-z2).
hls:
	$(MAKE) -C hls hls BOARD=$(BOARD)

# Vivado overlay (workstation only): make hls, then block design -> .bit/.hwh for BOARD, copied to
# python/mmfree/overlays/. Stops at once, naming Vivado, where Vivado is not installed.
.PHONY: overlay
overlay:
	@test -f overlay/$(BOARD)/makefile || { echo "make overlay: no overlay/$(BOARD)/ (boards: $$(ls overlay | grep -v -e common -e scripts | tr '\n' ' '))" >&2; exit 2; }
	@$(MAKE) --no-print-directory -C overlay/$(BOARD) all $(if $(wildcard $(PY)),PY=$(abspath $(PY)))
