"""Overlay build scripts, board parameters and packaging, checked without Vivado.

The Vivado Tcl is sourced by tclsh with stub Vivado commands (overlay/common/vivado_stub.tcl) that
record every call; the tests assert on the recorded block design (cells, PS settings, connections,
address map) and on the bitstream flow (order, timing gate, output names). Nothing here proves the
design builds in Vivado: that needs a workstation (docs/boards.md).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))

from mmfree import boards as B  # noqa: E402
from mmfree.errors import ConfigError  # noqa: E402

TCLSH = shutil.which("tclsh")
needs_tcl = pytest.mark.skipif(TCLSH is None, reason="tclsh not installed (apt-get install tcl)")
BOARDS = B.names()
KERNEL_CPP = os.path.join(ROOT, "hls", "mmfree_kernel", "mmfree_kernel.cpp")
REGS_H = os.path.join(ROOT, "hls", "include", "mmfree_regs.h")


def read(path):
    with open(path, "r", encoding="utf-8") as f:
        return f.read()


# ------------------------------------------------------------------------------------------------
# helpers: the kernel's interfaces from the HLS source

def hls_bundles(weight_ports):
    """m_axi bundles of mmfree_kernel for a board, evaluating the `#if MMFREE_WEIGHT_PORTS > k` blocks."""
    active, stack, out = True, [], []
    for line in read(KERNEL_CPP).splitlines():
        s = line.strip()
        m = re.match(r"#if\s+MMFREE_WEIGHT_PORTS\s*>\s*(\d+)", s)
        if m:
            stack.append(active)
            active = active and weight_ports > int(m.group(1))
            continue
        if s.startswith("#if"):
            stack.append(active)
            continue
        if s.startswith("#endif") and stack:
            active = stack.pop()
            continue
        m = re.search(r"#pragma HLS INTERFACE m_axi .*bundle=(\w+)", s)
        if m and active and m.group(1) not in out:
            out.append(m.group(1))
    return out


def hls_ctrl_bundle():
    m = re.search(r"#pragma HLS INTERFACE s_axilite port=return bundle=(\w+)", read(KERNEL_CPP))
    return m.group(1)


def hls_vlnvs():
    """VLNVs the HLS export scripts set (Tcl flow and v++ config), when those scripts exist."""
    found = []
    tcl = os.path.join(ROOT, "hls", "mmfree_kernel", "run_hls.tcl")
    if os.path.exists(tcl):
        for m in re.finditer(r"(?:config_export|export_design)[^\n]*(?:\\\n[^\n]*)*", read(tcl)):
            t = m.group(0)
            parts = [re.search(r"-%s\s+(\S+)" % k, t) for k in ("vendor", "library", "ipname", "version")]
            if all(parts):
                found.append(":".join(p.group(1) for p in parts))
    cfg = os.path.join(ROOT, "hls", "mmfree_kernel", "hls_config.cfg.in")
    if os.path.exists(cfg):
        kv = dict(re.findall(r"^package\.ip\.(vendor|library|name|version)=(\S+)", read(cfg), re.M))
        if len(kv) == 4:
            found.append("%s:%s:%s:%s" % (kv["vendor"], kv["library"], kv["name"], kv["version"]))
    return found


# ------------------------------------------------------------------------------------------------
# running the Tcl under the stub

def make_params(board, tmp_path, ip_repo=None):
    """Copy overlay/ into tmp_path, generate build/board_params.tcl there; returns the board dir."""
    dst = tmp_path / "overlay"
    if not dst.exists():
        shutil.copytree(os.path.join(ROOT, "overlay"), str(dst), ignore=shutil.ignore_patterns("build"))
    bdir = dst / board
    if ip_repo is None:
        ip_repo = tmp_path / "ip" / "mmfree_kernel"
        ip_repo.mkdir(parents=True, exist_ok=True)
        (ip_repo / "component.xml").write_text(
            "<spirit:component><spirit:vendor>xilinx.com</spirit:vendor><spirit:library>hls</spirit:library>"
            "<spirit:name>mmfree_kernel</spirit:name><spirit:version>1.0</spirit:version></spirit:component>")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "overlay", "scripts", "gen_board_params.py"), board,
                        str(bdir / "build" / "board_params.tcl"), "--ip-repo", str(ip_repo), "--require-ip"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return bdir


def run_stub(board_dir, script, pre="", expect_error=False):
    """Source `script` under the Vivado stub; returns (calls, error message or None)."""
    stub = os.path.join(str(board_dir), "..", "common", "vivado_stub.tcl")
    drv = "\n".join([
        "source {%s}" % stub,
        pre,
        "set rc [catch {source {%s}} err]" % script,
        "puts MMFREE_CALLS_BEGIN",
        "puts [stub_dump_json]",
        "puts MMFREE_CALLS_END",
        "if {$rc} { puts \"MMFREE_ERROR $err\" }",
    ])
    r = subprocess.run([TCLSH], input=drv, capture_output=True, text=True, cwd=str(board_dir), timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    calls = json.loads(out.split("MMFREE_CALLS_BEGIN", 1)[1].split("MMFREE_CALLS_END", 1)[0])
    err = None
    if "MMFREE_ERROR " in out:
        err = out.split("MMFREE_ERROR ", 1)[1].strip()
    if not expect_error:
        assert err is None, err
    return calls, err


def tcl_list(s):
    """Split a flat Tcl list of simple words (no nested braces beyond one level)."""
    return [a or b for a, b in re.findall(r"\{([^{}]*)\}|(\S+)", s)]


def bd_calls(board, tmp_path):
    bdir = make_params(board, tmp_path)
    name = B.get(board)["overlay_name"]
    calls, _ = run_stub(bdir, str(bdir / (name + ".tcl")),
                        pre="set ::stub_version %s; set ::stub_ret(get_projects) stub_project" % B.get(board)["vivado_version"])
    return calls


def cmd(calls, name):
    return [c for c in calls if c[0] == name]


def opt(call, flag):
    i = call.index(flag)
    return call[i + 1]


def ps_config(calls):
    for c in cmd(calls, "set_property"):
        if c[1] == "-dict" and c[-1] == "ps_0":
            return dict(zip(*[iter(tcl_list(c[2]))] * 2))
    raise AssertionError("no set_property -dict on the PS")


# ------------------------------------------------------------------------------------------------
# Tcl syntax

TCL_FILES = sorted(
    os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(ROOT, "overlay")) for f in fs
    if f.endswith(".tcl") and "/build/" not in dp + "/")


def test_every_board_has_its_overlay_folder():
    for b in BOARDS:
        d = os.path.join(ROOT, "overlay", b)
        name = B.get(b)["overlay_name"]
        for f in ("makefile", "build_bitstream.tcl", name + ".tcl"):
            assert os.path.isfile(os.path.join(d, f)), (b, f)


@needs_tcl
@pytest.mark.parametrize("path", TCL_FILES, ids=[os.path.relpath(p, ROOT) for p in TCL_FILES])
def test_tcl_is_complete(path):
    r = subprocess.run([TCLSH], input="set f [open {%s}]; puts [info complete [read $f]]" % path,
                       capture_output=True, text=True)
    assert r.stdout.strip() == "1", path
    # every command word balanced per line group too: sourcing proc definitions must not fail
    if "vivado_stub" not in path and "/common/" in path:
        r = subprocess.run([TCLSH], input="source {%s}" % os.path.join(ROOT, "overlay", "common", "vivado_stub.tcl")
                           + "\nsource {%s}\nputs ok" % path, capture_output=True, text=True)
        assert r.stdout.strip().endswith("ok"), r.stderr


# ------------------------------------------------------------------------------------------------
# board parameters

def test_boards_json_validates_and_keeps_existing_keys():
    raw = json.loads(read(B.BOARDS_JSON))
    for b in BOARDS:
        for key in ("part", "family", "pynq_version", "clock_mhz", "weight_ports", "port_bits", "ddr_peak_gbps",
                    "ddr_bytes", "cma_bytes", "max_d", "max_inter", "max_vocab", "max_layers"):
            assert key in raw[b], (b, key)
    assert set(BOARDS) >= {"kv260", "zcu104", "pynq-z2"}


def test_parts_ps_and_versions():
    kv, zc, z2 = B.get("kv260"), B.get("zcu104"), B.get("pynq-z2")
    assert kv["part"] == "xck26-sfvc784-2LV-c" and kv["board_part"].startswith("xilinx.com:kv260_som:part0:")
    assert "kv260_carrier:som240_1_connector" in kv["board_connections"]
    assert zc["part"] == "xczu7ev-ffvc1156-2-e" and zc["board_part"].startswith("xilinx.com:zcu104:part0:")
    assert z2["part"] == "xc7z020clg400-1" and z2["board_part"].startswith("tul.com.tw:pynq-z2:part0:")
    assert (kv["ps"], zc["ps"], z2["ps"]) == ("zynq_ultra_ps_e", "zynq_ultra_ps_e", "processing_system7")
    assert (kv["vivado_version"], kv["pynq_version"]) == ("2022.1", "3.0.1")
    assert zc["vivado_version"] == "2024.1" and zc["pynq_version"].startswith("3.1")
    assert z2["vivado_version"] == "2024.1" and z2["pynq_version"].startswith("3.1")
    for b in BOARDS:
        p = B.get(b)
        assert p["port_bits"] == (128 if p["family"] == "zynq_ultrascale_plus" else 64)


def test_validation_rejects_bad_boards(tmp_path):
    raw = json.loads(read(B.BOARDS_JSON))
    bad = dict(raw)
    bad["kv260"] = dict(raw["kv260"], pl_clock=dict(raw["kv260"]["pl_clock"], source="RPLL"))
    p = tmp_path / "b.json"
    p.write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="IOPLL"):
        B.load(str(p))
    bad["kv260"] = dict(raw["kv260"], ddr_segments=raw["kv260"]["ddr_segments"][:1])
    p.write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="ddr_segments cover"):
        B.load(str(p))
    with pytest.raises(ConfigError, match="unknown board"):
        B.get("zcu102")


def test_detect_board(tmp_path):
    assert B.detect_board(environ={}, root=str(tmp_path)) is None
    assert B.detect_board(environ={"BOARD": "Pynq-Z2"}, root=str(tmp_path)) == "pynq-z2"
    assert B.detect_board(environ={"MMFREE_BOARD": "zcu104", "BOARD": "Pynq-Z2"}, root=str(tmp_path)) == "zcu104"
    dt = tmp_path / "proc" / "device-tree"
    (dt / "chosen").mkdir(parents=True)
    (dt / "chosen" / "pynq_board").write_bytes(b"ZCU104\x00")
    assert B.detect_board(environ={}, root=str(tmp_path)) == "zcu104"
    (dt / "chosen" / "pynq_board").unlink()
    (dt / "model").write_bytes(b"ZynqMP SMK-K26 Rev1/B/A\x00")
    assert B.detect_board(environ={}, root=str(tmp_path)) == "kv260"
    (dt / "model").write_bytes(b"Raspberry Pi 4\x00")
    assert B.detect_board(environ={}, root=str(tmp_path)) is None


def test_board_params_tcl_is_generated_from_boards_json(tmp_path):
    bdir = make_params("kv260", tmp_path)
    text = (bdir / "build" / "board_params.tcl").read_text()
    assert "do not edit" in text
    r = subprocess.run([TCLSH or "false"], input="source {%s}\nputs $MMFREE(part)|$MMFREE(clock_mhz)|$MMFREE(port_bits)"
                       % (bdir / "build" / "board_params.tcl"), capture_output=True, text=True)
    if TCLSH:
        kv = B.get("kv260")
        assert r.stdout.strip() == "%s|%s|%s" % (kv["part"], kv["clock_mhz"], kv["port_bits"])
    # no board number is written into the Tcl by hand
    for path in TCL_FILES:
        if "vivado_stub" in path:
            continue
        src = read(path)
        for b in BOARDS:
            p = B.get(b)
            for value in (p["part"], p["board_part"], p["ctrl_base"], p["intc_base"]):
                assert value not in src, (path, value)
        assert not re.search(r"FREQMHZ\s+\{?\d", src), path


def test_gen_board_params_finds_a_zipped_export_and_fails_clearly_without_one(tmp_path):
    import zipfile
    gen = os.path.join(ROOT, "overlay", "scripts", "gen_board_params.py")
    z = tmp_path / "xilinx_com_hls_mmfree_kernel_1_0.zip"
    with zipfile.ZipFile(str(z), "w") as f:
        f.writestr("component.xml", "<spirit:name>mmfree_kernel</spirit:name>")
    out = tmp_path / "b" / "board_params.tcl"
    r = subprocess.run([sys.executable, gen, "zcu104", str(out), "--ip-repo", str(z), "--require-ip"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "set MMFREE(ip_repo) {%s}" % (tmp_path / "b" / "ip") in out.read_text()
    r = subprocess.run([sys.executable, gen, "zcu104", str(out), "--ip-repo", str(tmp_path / "nothing"),
                        "--require-ip"], capture_output=True, text=True)
    assert r.returncode == 2 and "make hls BOARD=zcu104" in r.stderr


# ------------------------------------------------------------------------------------------------
# the block design, recorded

def driver_vlnvs():
    p = os.path.join(ROOT, "python", "mmfree", "driver.py")
    if not os.path.exists(p):
        return []
    src = read(p)
    consts = dict(re.findall(r'^(\w+)\s*=\s*"([^"]+)"', src, re.M))
    m = re.search(r"bindto\s*=\s*\[([^\]]*)\]", src)
    out = []
    for item in (m.group(1).split(",") if m else []):
        item = item.strip()
        out.append(item.strip("\"'") if item[:1] in "\"'" else consts.get(item, item))
    return [v for v in out if v]


def test_kernel_vlnv_matches_driver_and_hls_export():
    vlnv = B.kernel()["vlnv"]
    assert vlnv.split(":")[2] == B.kernel()["top"] == "mmfree_kernel"
    assert ("VLNV xilinx.com:hls:mmfree_kernel:1.0" in read(KERNEL_CPP)) == (vlnv == "xilinx.com:hls:mmfree_kernel:1.0")
    for v in hls_vlnvs():
        assert v == vlnv, "HLS export %s != boards.json %s" % (v, vlnv)
    for v in driver_vlnvs():
        assert v == vlnv, "driver bindto %s != boards.json %s" % (v, vlnv)
    assert "s_axi_" + hls_ctrl_bundle() == B.kernel()["ctrl_intf"]


@needs_tcl
@pytest.mark.parametrize("board", BOARDS)
def test_block_design(board, tmp_path):
    p = B.get(board)
    calls = bd_calls(board, tmp_path)
    cells = {c[-1]: opt(c, "-vlnv") for c in cmd(calls, "create_bd_cell")}
    # the HLS IP with the driver's VLNV, the PS of the family, reset, SmartConnects, INTC
    assert cells["mmfree_kernel_0"] == B.kernel()["vlnv"]
    assert cells["ps_0"].startswith("xilinx.com:ip:%s:" % p["ps"])
    assert any(v.startswith("xilinx.com:ip:proc_sys_reset:") for v in cells.values())
    assert any(v.startswith("xilinx.com:ip:smartconnect:") for v in cells.values())
    assert cells["axi_intc_0"].startswith("xilinx.com:ip:axi_intc:")
    assert cmd(calls, "apply_bd_automation") and "apply_board_preset" in cmd(calls, "apply_bd_automation")[0][-2]

    cfg = ps_config(calls)
    # PL clock 0 from the IO PLL at the HLS target clock (PYNQ programs PL clocks through the IOPLL)
    if p["ps"] == "zynq_ultra_ps_e":
        assert cfg["CONFIG.PSU__CRL_APB__PL0_REF_CTRL__SRCSEL"] == "IOPLL"
        assert float(cfg["CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ"]) == p["clock_mhz"]
        assert cfg["CONFIG.PSU__USE__IRQ0"] == "1"
        assert p["clock_mhz"] <= 333
    else:
        assert cfg["CONFIG.PCW_FCLK0_PERIPHERAL_CLKSRC"] == "IO PLL"
        assert float(cfg["CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ"]) == p["clock_mhz"]
        assert cfg["CONFIG.PCW_USE_FABRIC_INTERRUPT"] == "1" and cfg["CONFIG.PCW_IRQ_F2P_INTR"] == "1"
        assert p["clock_mhz"] <= 150
    hp_names = [h["port"] for h in p["weight_hp_ports"]]
    # the PL-to-DDR slave ports of the family, each used once, the full-width HP ports first
    assert all(re.match(r"S_AXI_(HP\d_FPD|HPC\d_FPD|LPD)$" if p["ps"] == "zynq_ultra_ps_e" else r"S_AXI_HP\d$", n)
               for n in hp_names + [p["io_hp_port"]["port"]])
    assert hp_names[:min(4, len(hp_names))] == [n for n in hp_names if re.match(r"S_AXI_HP\d", n)][:4]
    for hp in p["weight_hp_ports"] + [p["io_hp_port"]]:
        assert cfg["CONFIG." + hp["enable"]] == "1"
        assert int(cfg["CONFIG." + hp["width_param"]]) == p["port_bits"]

    # every m_axi bundle of the HLS source is wired: weight bundle i -> HP port i, io bundles -> io port
    bundles = hls_bundles(p["weight_ports"])
    assert bundles == B.m_axi_bundles(board) or sorted(bundles) == sorted(B.m_axi_bundles(board))
    nets = [(c[1], c[2]) for c in cmd(calls, "connect_bd_intf_net")]
    ends = {}
    for a, b in nets:
        ends.setdefault(a, []).append(b)
        ends.setdefault(b, []).append(a)

    def reach(pin):  # kernel pin -> smartconnect S -> M -> PS port
        sc = ends[pin][0].split("/")[0]
        return ends[sc + "/M00_AXI"][0]
    for i in range(p["weight_ports"]):
        assert reach("mmfree_kernel_0/m_axi_gmem_w%d" % i) == "ps_0/" + hp_names[i]
    for b in B.kernel()["io_bundles"]:
        assert b in bundles
        assert reach("mmfree_kernel_0/m_axi_" + b) == "ps_0/" + p["io_hp_port"]["port"]
    assert "mmfree_kernel_0/s_axi_control" in ends
    # interrupt: kernel -> INTC -> first PL interrupt line
    assert ["connect_bd_net", "mmfree_kernel_0/interrupt", "axi_intc_0/intr"] in calls
    assert ["connect_bd_net", "axi_intc_0/irq", "ps_0/" + p["interrupt"]["ps_pin"]] in calls
    # one clock for everything
    clk = "ps_0/" + p["pl_clock"]["ps_pin"]
    clocked = {c[2] for c in cmd(calls, "connect_bd_net") if c[1] == clk}
    assert "mmfree_kernel_0/ap_clk" in clocked
    for hp in p["weight_hp_ports"] + [p["io_hp_port"]]:
        assert "ps_0/" + hp["aclk"] in clocked
    assert cmd(calls, "validate_bd_design") and cmd(calls, "save_bd_design")


@needs_tcl
@pytest.mark.parametrize("board", BOARDS)
def test_address_map_covers_every_ddr_byte_from_every_port(board, tmp_path):
    p = B.get(board)
    calls = bd_calls(board, tmp_path)
    amap = {}
    for c in cmd(calls, "assign_bd_address"):
        space, seg = opt(c, "-target_address_space"), c[-2] if c[-1] == "-force" else c[-1]
        amap.setdefault(space, []).append((int(opt(c, "-offset"), 16), int(opt(c, "-range"), 16), seg))
    # s_axilite at its fixed base, a window covering the register file
    span = int(re.search(r"#define MMFREE_REG_SPAN\s+(0x[0-9a-fA-F]+)", read(REGS_H)).group(1), 16)
    ctrl = [a for a in amap["ps_0/Data"] if a[2] == "mmfree_kernel_0/s_axi_control/Reg"]
    assert ctrl and ctrl[0][0] == B.hexint(p["ctrl_base"]) and ctrl[0][1] >= max(span, 4096)
    intc = [a for a in amap["ps_0/Data"] if a[2] == "axi_intc_0/S_AXI/Reg"]
    assert intc and intc[0][0] == B.hexint(p["intc_base"])
    wins = sorted(amap["ps_0/Data"])
    for (o1, r1, _), (o2, _, _) in zip(wins, wins[1:]):
        assert o1 + r1 <= o2, "control windows overlap"
    # every m_axi port: the board's whole DDR (what pynq.allocate can return), through its own port
    hp_of = dict(zip(B.m_axi_bundles(board), p["weight_hp_ports"] + [p["io_hp_port"]] * len(B.kernel()["io_bundles"])))
    for bundle in hls_bundles(p["weight_ports"]):
        segs = amap.get("mmfree_kernel_0/Data_m_axi_" + bundle)
        assert segs, bundle
        assert sum(r for _, r, _ in segs) == p["ddr_bytes"]
        hp = hp_of[bundle]
        for (off, rng, seg), want in zip(sorted(segs), sorted(p["ddr_segments"], key=lambda s: B.hexint(s["base"]))):
            assert (off, rng) == (B.hexint(want["base"]), B.hexint(want["size"]))
            assert seg == "ps_0/%s/%s_%s" % (hp["intf"], hp["seg_prefix"], want["name"])
        # the CMA pool is inside DDR (the driver's buffers come from there)
        assert p["cma_bytes"] <= p["ddr_bytes"]


@needs_tcl
def test_vivado_version_gate(tmp_path):
    bdir = make_params("kv260", tmp_path)
    script = str(bdir / "mmfree_kv260.tcl")
    calls, err = run_stub(bdir, script, pre="set ::stub_version 2024.1; set ::stub_ret(get_projects) p",
                          expect_error=True)
    assert err and "Vivado 2022.1" in err and "MMFREE_ANY_VIVADO" in err
    assert not cmd(calls, "create_bd_cell")


# ------------------------------------------------------------------------------------------------
# the bitstream flow, recorded

@needs_tcl
@pytest.mark.parametrize("board", BOARDS)
def test_bitstream_flow(board, tmp_path):
    p = B.get(board)
    bdir = make_params(board, tmp_path)
    name = p["overlay_name"]
    hwh = bdir / "build" / "vivado" / (name + ".gen") / "sources_1" / "bd" / name / "hw_handoff" / (name + ".hwh")
    hwh.parent.mkdir(parents=True)
    hwh.write_text("<hwh/>")
    calls, _ = run_stub(bdir, str(bdir / "build_bitstream.tcl"), pre="set ::stub_version %s" % p["vivado_version"])
    names = [c[0] for c in calls]
    assert len(cmd(calls, "create_project")) == 1
    proj = cmd(calls, "create_project")[0]
    assert opt(proj, "-part") == p["part"]
    assert ["set_property", "board_part", p["board_part"], ""] == cmd(calls, "set_property")[0][:3] + [""]
    if p["board_connections"]:
        assert any(c[1] == "board_connections" and c[2] == p["board_connections"] for c in cmd(calls, "set_property"))
    assert any(c[1] == "ip_repo_paths" for c in cmd(calls, "set_property"))
    order = ["create_bd_design", "make_wrapper", "launch_runs", "wait_on_run", "open_run",
             "report_timing_summary", "get_timing_paths", "write_bitstream"]
    pos = [names.index(n) for n in order]
    assert pos == sorted(pos), list(zip(order, pos))
    runs = [c[1] for c in cmd(calls, "launch_runs")]
    assert runs == ["synth_1", "impl_1"]
    out = bdir / "build" / "out"
    assert (out / (name + ".bit")).exists() and (out / (name + ".hwh")).read_text() == "<hwh/>"


@needs_tcl
@pytest.mark.parametrize("slack", ["setup -0.042", "hold -0.003"])
def test_timing_gate_fails_the_build(slack, tmp_path):
    p = B.get("kv260")
    bdir = make_params("kv260", tmp_path)
    kind, value = slack.split()
    calls, err = run_stub(bdir, str(bdir / "build_bitstream.tcl"),
                          pre="set ::stub_version %s; set ::stub_slack(%s) %s" % (p["vivado_version"], kind, value),
                          expect_error=True)
    assert err and "timing not met" in err
    assert not cmd(calls, "write_bitstream")
    assert not (bdir / "build" / "out" / (p["overlay_name"] + ".bit")).exists()


# ------------------------------------------------------------------------------------------------
# make overlay without Vivado

def test_make_overlay_fails_fast_without_vivado(tmp_path):
    if shutil.which("vivado"):
        pytest.skip("Vivado is installed here")
    env = dict(os.environ, PATH="/usr/bin:/bin")
    t0 = time.time()
    r = subprocess.run(["make", "-s", "overlay", "BOARD=kv260"], cwd=ROOT, capture_output=True, text=True,
                       env=env, timeout=60)
    assert time.time() - t0 < 10
    assert r.returncode != 0
    assert "Vivado not found" in r.stderr and "2022.1" in r.stderr
    r = subprocess.run(["make", "-s", "overlay", "BOARD=zcu102"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "no overlay/zcu102/" in r.stderr


# ------------------------------------------------------------------------------------------------
# resources

def test_weight_ports_within_the_register_map():
    regs = read(REGS_H)
    max_regs = int(re.search(r"#define MMFREE_MAX_WEIGHT_PORT_REGS\s+(\d+)", regs).group(1))
    for b in BOARDS:
        assert B.get(b)["weight_ports"] <= min(max_regs, B._MAX_WEIGHT_PORTS), b
        assert 12 % B.get(b)["weight_ports"] == 0, b   # the layout pads rows to a multiple of 12


@pytest.mark.parametrize("board", BOARDS)
def test_resource_estimate_fits_with_margin(board):
    """The census of the kernel, priced, fits every board with 20 % to spare (issue targets: KV260 LUT <= 70 %,
    DSP <= 60 %, BRAM36 and URAM <= 80 %)."""
    ok, frac = B.estimate_fits(board, margin=0.8)
    assert ok, "%s: %s" % (board, {k: round(v, 2) for k, v in frac.items()})
    est = B.resource_estimate(board)
    assert est["lut"] > 10000 and est["bram36"] > 0   # a model of a real design, not zeros
    assert est["census"].endswith("%s.json" % board)
    if board in ("kv260", "zcu104"):
        assert frac["lut"] <= 0.70 and frac["dsp"] <= 0.60
    if B.get(board)["resources"]["uram"] == 0:
        assert est["uram"] == 0


def test_board_budgets_are_the_data_sheet_numbers():
    assert B.resource_budget("kv260") == dict(lut=117120, ff=234240, bram36=144, uram=64, dsp=1248)
    assert B.resource_budget("zcu104") == dict(lut=230400, ff=460800, bram36=312, uram=96, dsp=1728)
    assert B.resource_budget("pynq-z2") == dict(lut=53200, ff=106400, bram36=140, uram=0, dsp=220)


def test_docs_table_is_the_model_output():
    doc = read(os.path.join(ROOT, "docs", "boards.md"))
    assert B.estimate_table() in doc, "regenerate the table: python -m mmfree.boards"


# ------------------------------------------------------------------------------------------------
# packaging

def test_entry_points_and_manifest():
    import configparser
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"), encoding="utf-8")     # the package metadata (setup.cfg)
    ep = cfg["options.entry_points"]
    assert ep["pynq.overlays"].split() == ["mmfree", "=", "mmfree.overlays"]
    assert ep["pynq.notebooks"].split() == ["mmfree", "=", "mmfree.notebooks"]
    for mod in ("overlays", "notebooks"):
        assert os.path.isfile(os.path.join(ROOT, "python", "mmfree", mod, "__init__.py"))
    m = B.manifest()
    assert set(m) == set(BOARDS)
    for b, e in m.items():
        stem = B.get(b)["overlay_name"]
        assert e["files"] == [stem + ".bit", stem + ".hwh"]
        # not published yet: no URL may look real
        assert e["published"] is False and e["url"] is None and "not yet published" in e["status"]
        assert set(e["sha256"]) == set(e["files"])


def test_bitstreams_are_not_tracked_in_git():
    r = subprocess.run(["git", "ls-files", "*.bit", "*.hwh", "*.xsa"], cwd=ROOT, capture_output=True, text=True)
    assert r.stdout.strip() == ""


def test_overlay_path_explains_what_to_do(tmp_path, monkeypatch):
    import shutil as _sh
    d = tmp_path / "overlays"
    d.mkdir()
    _sh.copy(os.path.join(B.overlay_dir(), "manifest.json"), str(d))
    monkeypatch.setattr(B, "overlay_dir", lambda: str(d))
    with pytest.raises(B.OverlayMissing) as e:
        B.overlay_path("kv260")
    msg = str(e.value)
    assert "make overlay BOARD=kv260" in msg and "Vivado 2022.1" in msg and str(d) in msg
    assert "mmfree_kv260.bit" in msg and "not yet published" in msg
    (d / "mmfree_kv260.bit").write_bytes(b"x")
    with pytest.raises(B.OverlayMissing, match="mmfree_kv260.hwh"):
        B.overlay_path("kv260")
    (d / "mmfree_kv260.hwh").write_text("<hwh/>")
    assert B.overlay_path("kv260") == str(d / "mmfree_kv260.bit")
    monkeypatch.setattr(B, "detect_board", lambda *a, **k: None)
    with pytest.raises(ConfigError, match="not running on a known board"):
        B.overlay_path()


@pytest.mark.parametrize("board,act,ok", [("kv260", "333.333", False), ("kv260", "249.997501", True),
                                          ("zcu104", "299.997009", True), ("pynq-z2", "142.857", False)])
def test_block_design_checks_the_pl_clock_vivado_makes(board, act, ok, tmp_path):
    """The PS's ACT_FREQMHZ (what the PLL divisors really give) must be boards.json clock_mhz within 0.5 %:
    KV260's 1000 MHz IOPLL cannot make 300 MHz (it gives 333.3), so the build stops naming the choices."""
    bdir = make_params(board, tmp_path)
    name = B.get(board)["overlay_name"]
    _, err = run_stub(bdir, str(bdir / (name + ".tcl")), expect_error=not ok,
                      pre="set ::stub_version %s; set ::stub_ret(get_projects) p; set ::stub_act_mhz %s"
                          % (B.get(board)["vivado_version"], act))
    if ok:
        assert err is None
    else:
        assert "PL clock 0 comes out at %s MHz, boards.json clock_mhz asks %s MHz" % (act, B.get(board)["clock_mhz"]) in err
        assert "MHz / n" in err
