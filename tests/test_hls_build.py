"""`make hls` without Vitis HLS stops at once, naming Vitis HLS, non-zero; the generated board header."""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(shutil.which("vitis_hls") or shutil.which("v++"), reason="Vitis HLS is installed here")
def test_make_hls_without_vitis_fails_clearly():
    r = subprocess.run(["make", "-s", "hls", "BOARD=kv260"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "Vitis HLS" in r.stderr


@pytest.mark.parametrize("board", ["kv260", "zcu104", "pynq-z2"])
def test_board_header_from_boards_json(tmp_path, board):
    import json
    out = tmp_path / "mmfree_board.h"
    subprocess.run([sys.executable, os.path.join(ROOT, "hls", "scripts", "gen_board_header.py"), board, str(out)],
                   check=True)
    text = out.read_text()
    b = json.load(open(os.path.join(ROOT, "python", "mmfree", "data", "boards.json")))[board]
    assert f"#define MMFREE_WEIGHT_PORTS {b['weight_ports']}" in text
    assert f"#define MMFREE_PORT_BITS {b['port_bits']}" in text
    assert f"#define MMFREE_CLOCK_MHZ {b['clock_mhz']}" in text
    assert f'#define MMFREE_PART "{b["part"]}"' in text


def test_hls_scripts_name_parts_and_vlnv():
    tcl = open(os.path.join(ROOT, "hls", "mmfree_kernel", "run_hls.tcl")).read()
    cfg = open(os.path.join(ROOT, "hls", "mmfree_kernel", "hls_config.cfg.in")).read()
    for key in ("csim_design", "csynth_design", "cosim_design", "export_design", "-vendor xilinx.com",
                "-library hls", "-ipname mmfree_kernel", "-version 1.0"):
        assert key in tcl
    for key in ("package.ip.vendor=xilinx.com", "package.ip.library=hls", "package.ip.name=mmfree_kernel",
                "package.ip.version=1.0", "syn.top=mmfree_kernel", "flow_target=vivado"):
        assert key in cfg
