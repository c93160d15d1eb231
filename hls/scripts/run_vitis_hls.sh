#!/usr/bin/env bash
# make hls BOARD=<board>: Vitis HLS csim, csynth, cosim and IP export of mmfree_kernel.
# Uses vitis-run / v++ --mode hls (unified flow) when present, else vitis_hls with run_hls.tcl.
# STEPS="csim csynth cosim export" by default.
set -euo pipefail
BOARD="${1:-kv260}"
HLS="$(cd "$(dirname "$0")/.." && pwd)"
ROOT="$(cd "$HLS/.." && pwd)"
PY="${PY:-$( [ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python3 )}"
STEPS="${STEPS:-csim csynth cosim export}"

if ! command -v vitis_hls >/dev/null 2>&1 && ! command -v v++ >/dev/null 2>&1; then
    V="$("$PY" -c "import json; print(json.load(open('$ROOT/python/mmfree/data/boards.json'))['$BOARD']['vivado_version'])" 2>/dev/null || echo "?")"
    echo "make hls: Vitis HLS not found (neither vitis_hls nor v++ is on PATH)." >&2
    echo "  This target runs on a workstation with AMD Vitis HLS $V for $BOARD: the same release as the" >&2
    echo "  Vivado that builds its overlay (boards.json vivado_version: kv260 2022.1, zcu104 and pynq-z2 2024.1)." >&2
    echo "  Both the vitis_hls flow (2022.1) and the vitis-run / v++ flow (2023.2 and later) are handled." >&2
    echo "  source its settings64.sh (e.g. /tools/Xilinx/Vitis_HLS/$V/settings64.sh), then: make hls BOARD=$BOARD" >&2
    echo "  Here, use 'make csim' (g++ C-simulation of the same sources)." >&2
    exit 2
fi

OUT="$ROOT/build/hls/$BOARD"
mkdir -p "$OUT"
"$PY" "$HLS/scripts/gen_board_header.py" "$BOARD" "$OUT/mmfree_board.h"
read -r PART CLOCK <<<"$("$PY" -c "import json,sys; b=json.load(open('$ROOT/python/mmfree/data/boards.json'))['$BOARD']; print(b['part'], b['clock_mhz'])")"
VECTORS="$("$PY" "$HLS/scripts/gen_vectors.py" "$OUT/vectors" --board "$BOARD" --depths "$OUT/mmfree_cosim.h" | tail -1)"
echo "mmfree_kernel for $BOARD: part $PART, ${CLOCK} MHz, steps: $STEPS"
cd "$OUT"
if command -v v++ >/dev/null 2>&1 && command -v vitis-run >/dev/null 2>&1; then
    sed -e "s|@PART@|$PART|" -e "s|@CLOCK_MHZ@|$CLOCK|" -e "s|@HLS@|$HLS|g" -e "s|@BOARD_INC@|$OUT|g" \
        -e "s|@VECTORS@|$VECTORS|g" "$HLS/mmfree_kernel/hls_config.cfg.in" > hls_config.cfg
    [[ " $STEPS " == *" csim "* ]] && vitis-run --mode hls --csim --config hls_config.cfg --work_dir mmfree_kernel_prj
    [[ " $STEPS " == *" csynth "* ]] && v++ --compile --mode hls --config hls_config.cfg --work_dir mmfree_kernel_prj
    [[ " $STEPS " == *" cosim "* ]] && vitis-run --mode hls --cosim --config hls_config.cfg --work_dir mmfree_kernel_prj
    [[ " $STEPS " == *" export "* ]] && vitis-run --mode hls --package --config hls_config.cfg --work_dir mmfree_kernel_prj
else
    MMFREE_PART="$PART" MMFREE_CLOCK_MHZ="$CLOCK" MMFREE_BOARD_INC="$OUT" MMFREE_VECTORS="$VECTORS" \
        MMFREE_STEPS="$STEPS" vitis_hls -f "$HLS/mmfree_kernel/run_hls.tcl"
fi
echo "IP: $OUT/mmfree_kernel_prj (xilinx.com:hls:mmfree_kernel:1.0)"
