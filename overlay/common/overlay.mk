# Shared rules of overlay/<board>/makefile (each sets BOARD and includes this file).
#
#   make            check for Vivado, HLS IP (make hls), board_params.tcl, bitstream, install
#   make params     build/board_params.tcl from python/mmfree/data/boards.json only
#   make bitstream  Vivado: block design -> .bit/.hwh in build/out/ (IP must exist)
#   make install    copy build/out/<overlay>.bit/.hwh to python/mmfree/overlays/ (where pynq finds them)
#   make manifest   print the manifest.json entry (sha256) of the built overlay
# Variables: HLS_IP_REPO=<folder with component.xml or .zip> (default: found under build/hls/$(BOARD)),
#            MMFREE_JOBS (Vivado jobs, default 4), MMFREE_ANY_VIVADO=1 (allow another Vivado version).
ROOT    := $(abspath $(CURDIR)/../..)
PY      ?= $(if $(wildcard $(ROOT)/.venv/bin/python),$(ROOT)/.venv/bin/python,python3)
BUILD   := $(CURDIR)/build
PARAMS  := $(BUILD)/board_params.tcl
VIVADO  ?= vivado
STEM    := mmfree_$(subst -,_,$(BOARD))
OUT     := $(BUILD)/out
PKG_DIR := $(ROOT)/python/mmfree/overlays
HLS_IP_REPO ?=

.PHONY: all check_vivado hls_ip params params_ip bitstream install manifest clean

all: check_vivado hls_ip bitstream install

check_vivado:
	@command -v $(VIVADO) >/dev/null 2>&1 || { \
	  echo "make overlay: Vivado not found ('$(VIVADO)' is not on PATH)." >&2; \
	  v=$$($(PY) -c "import json;print(json.load(open('$(ROOT)/python/mmfree/data/boards.json'))['$(BOARD)']['vivado_version'])" 2>/dev/null); \
	  echo "  The $(BOARD) overlay is built on a workstation with AMD Vivado $$v and Vitis HLS $$v" >&2; \
	  echo "  (the tool version of the board's PYNQ image): source <Xilinx>/Vivado/$$v/settings64.sh," >&2; \
	  echo "  then run: make overlay BOARD=$(BOARD)" >&2; \
	  echo "  Prebuilt overlays: python/mmfree/overlays/manifest.json; docs/boards.md." >&2; \
	  exit 2; }

hls_ip:
	$(MAKE) -C $(ROOT) hls BOARD=$(BOARD)

params:
	@mkdir -p $(BUILD)
	$(PY) $(ROOT)/overlay/scripts/gen_board_params.py $(BOARD) $(PARAMS) $(if $(HLS_IP_REPO),--ip-repo $(HLS_IP_REPO))

params_ip:
	@mkdir -p $(BUILD)
	$(PY) $(ROOT)/overlay/scripts/gen_board_params.py $(BOARD) $(PARAMS) $(if $(HLS_IP_REPO),--ip-repo $(HLS_IP_REPO)) --require-ip

bitstream: check_vivado params_ip
	cd $(BUILD) && $(VIVADO) -mode batch -notrace -log vivado.log -journal vivado.jou \
	  -source $(CURDIR)/build_bitstream.tcl
	test -f $(OUT)/$(STEM).bit && test -f $(OUT)/$(STEM).hwh

install:
	@mkdir -p $(PKG_DIR)
	cp $(OUT)/$(STEM).bit $(OUT)/$(STEM).hwh $(PKG_DIR)/
	@echo "installed $(STEM).bit and $(STEM).hwh in $(PKG_DIR)"

manifest:
	@$(PY) -c "import hashlib,json,sys; p='$(OUT)/$(STEM)'; \
	h=lambda f: hashlib.sha256(open(f,'rb').read()).hexdigest(); \
	print(json.dumps({'$(BOARD)': {'files': ['$(STEM).bit', '$(STEM).hwh'], 'sha256': {'$(STEM).bit': h(p+'.bit'), '$(STEM).hwh': h(p+'.hwh')}}}, indent=2))"

clean:
	rm -rf $(BUILD) .Xil *.jou *.log
