"""The board path (issue 15): identity block, stale/foreign overlays, PL clock, CMA, board data, KR260.

Everything runs through the emulator (the C-simulated kernel writes the identity block from the same
header the hardware is built from) or on boards.json; nothing here needs a board."""
import os
import warnings

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOARD = "kv260"


def _acc(csim_lib, packed_cache, **kw):
    from mmfree import driver as drv
    from mmfree import emu
    _, path = packed_cache("tiny", "2bit")
    return drv.Accelerator(emu.Overlay(board=BOARD, lib=csim_lib, **kw), path)


def test_identity_reads_zero_before_the_first_call_then_the_build(csim_lib):
    from mmfree import driver as drv
    from mmfree import emu
    ol = emu.Overlay(board=BOARD, lib=csim_lib)
    ip = ol.mmfree_kernel_0
    assert ip.read_reg("ID_MAGIC") == 0          # like the hardware: output registers are 0 until a call
    ident = ip.identify()
    c = csim_lib.config
    assert ident["magic"] == drv.ID_MAGIC and ident["regs_version"] == drv.REGS_VERSION
    assert (ident["weight_ports"], ident["port_bits"], ident["float_lanes"], ident["sigmoid_lanes"]) == \
        (c["ports"], c["port_bits"], c["float_lanes"], c["sigmoid_lanes"])
    assert (ident["max_d"], ident["max_inter"], ident["max_vocab"], ident["max_layers"]) == \
        (c["max_d"], c["max_inter"], c["max_vocab"], c["max_layers"])
    assert ident["clock_mhz"] == drv.board_params(BOARD)["clock_mhz"] == 250
    assert ol.registers.idents == 1 and ol.registers.starts == 0    # not a compute op
    vld = drv.REGISTERS["ID_MAGIC"] + 4
    assert ip.mmio.read(vld) == 1 and ip.mmio.read(vld) == 0          # ap_vld: set by the call, clear on read
    assert ip.read_reg("ID_MAGIC") == drv.ID_MAGIC                   # the data word stays
    assert drv.check_identity(ident, BOARD) == {k: ident[k] for k in
                                                ("max_d", "max_inter", "max_vocab", "max_layers", "weight_ports")}


def test_accelerator_identifies_first_and_runs(csim_lib, packed_cache):
    acc = _acc(csim_lib, packed_cache)
    assert acc.identity["magic"] == 0x4D4D4652 and acc.clock_target_mhz == 250
    assert acc.clock_mhz == pytest.approx(250, rel=1e-4)     # 249.9975 through pynq.Clocks (33.333 x 60 / 2 / 4)
    assert acc.clock_warning is None
    assert acc.step(1).shape == (acc.vocab,)


@pytest.mark.parametrize("identity,found", [
    ("stale", "found no identity block (0x00000000 at ID_MAGIC 0xc0)"),
    ({"ID_MAGIC": 0x12345678}, "found ID_MAGIC 0x12345678: not an mmfree kernel"),
    ({"ID_VERSION": 5}, "register map version 5, this driver version 4"),
    ({"ID_CONFIG": 2 | 64 << 8 | 16 << 16}, "built for 2 weight ports of 64 bits, board kv260 has 4 of 128"),
])
def test_stale_or_foreign_overlay_refused_before_any_buffer(csim_lib, packed_cache, identity, found):
    from mmfree import driver as drv
    from mmfree import emu
    _, path = packed_cache("tiny", "2bit")
    ol = emu.Overlay(board=BOARD, lib=csim_lib, kernel_identity=identity)
    with pytest.raises(drv.StaleOverlay) as e:
        drv.Accelerator(ol, path)
    msg = str(e.value)
    assert found in msg, msg
    assert "make overlay BOARD=kv260" in msg
    if identity == "stale":
        assert "expected ID_MAGIC 0x4d4d4652 ('MMFR') and register map version 4" in msg
    assert ol.memory.buffers() == 0 and ol.registers.starts == 0


def test_wrong_clock_warns_and_is_used(csim_lib, packed_cache):
    with pytest.warns(RuntimeWarning) as rec:
        acc = _acc(csim_lib, packed_cache, fclk_mhz=333.333)   # an image that set IOPLL / 3 on a 250 MHz build
    msg = str(rec[0].message)
    assert "PL clock 0 runs at 333.33" in msg and "the overlay was built for 250.000 MHz" in msg
    assert "IOPLL 1000 MHz / n (333.3, 250.0, 200.0" in msg
    assert acc.clock_mhz == pytest.approx(333.333, rel=1e-4) and acc.clock_warning in msg
    from mmfree import perf
    c = acc.config
    at = perf.project(BOARD, c.hidden_size, c.num_hidden_layers, c.intermediate_size, c.vocab_size, "2bit",
                      clock_mhz=acc.clock_mhz)
    base = perf.project(BOARD, c.hidden_size, c.num_hidden_layers, c.intermediate_size, c.vocab_size, "2bit")
    assert at["clock_mhz"] == acc.clock_mhz and base["clock_mhz"] == 250.0
    assert at["port_capacity_gbps"] == pytest.approx(base["port_capacity_gbps"] * acc.clock_mhz / 250)


def test_clock_within_tolerance_is_quiet():
    from mmfree import driver as drv
    assert drv.check_clock(249.9975, 250.0, "kv260") is None      # 1000 MHz / 4 as the PS reports it
    assert drv.check_clock(None, 250.0) is None                    # unknown (off-board pynq): nothing to say
    assert "333.333 MHz" in drv.check_clock(333.333, 250.0, "kv260")


def test_every_board_clock_is_an_integer_divisor_of_its_pll():
    """PYNQ writes IOPLL divisors only: the build's clock must be PLL / n (KV260: 1000 MHz -> 250, not 300)."""
    from mmfree import boards
    for name in boards.names():
        b = boards.get(name)
        pll = b["pl_clock"]["pll_mhz"]
        n = round(pll / b["clock_mhz"])
        assert abs(pll / n - b["clock_mhz"]) <= 0.005 * b["clock_mhz"], (name, pll, b["clock_mhz"])
    assert boards.get("kv260")["clock_mhz"] == 250 and boards.get("zcu104")["clock_mhz"] == 300


def test_ddr_rates_and_sources():
    from mmfree import boards
    bus = {"kv260": 8, "zcu104": 8, "pynq-z2": 2}     # bytes per transfer: 64-bit DDR4, 16-bit DDR3
    for name in boards.names():
        b = boards.get(name)
        assert b["ddr_peak_gbps"] == pytest.approx(b["ddr_mts"] * bus[name] / 1000, rel=2e-3), name
        assert set(b["sources"]) >= {"clock", "ddr", "cma", "power"}, name
        assert b["power_sensor"]["measures"], name
    assert boards.get("kv260")["ddr_mts"] == 2133 and boards.get("kv260")["ddr_peak_gbps"] == 17.07
    from mmfree import cycles
    assert cycles.Machine("kv260").ddr_bps == 17.07e9      # the performance model reads it


def test_cma_table_and_compiled_maxima_fit_the_stock_cma():
    """Stock CMA: KV260 1000 MiB, ZCU104 512 MiB, PYNQ-Z2 128 MiB. Every released size within a board's
    compiled maxima fits its stock CMA, except on PYNQ-Z2, where even 370M needs a larger CMA."""
    from mmfree import boards
    from mmfree.cycles import MODELS
    assert [boards.get(b)["cma_bytes"] // 2**20 for b in ("kv260", "zcu104", "pynq-z2")] == [1000, 512, 128]
    rows = boards.cma_table()
    need = {(b, s, p): n for b, s, p, n, _, _ in rows}
    assert round(need[("kv260", "370M", "base3")] / 2**20, 1) == 130.3
    assert round(need[("kv260", "2.7B", "2bit")] / 2**20, 1) == 786.0
    for board, size, packing, n, stock, fits in rows:
        b = boards.get(board)
        d, layers, inter, vocab = MODELS[size]
        compiled = d <= b["max_d"] and inter <= b["max_inter"] and layers <= b["max_layers"]
        if compiled and board != "pynq-z2":
            assert fits, (board, size, packing)
    assert not any(f for b, *_, f in rows if b == "pynq-z2")
    assert boards.cma_markdown() in open(os.path.join(ROOT, "docs", "boards.md"), encoding="utf-8").read(), \
        "regenerate the CMA table: python -m mmfree.boards --cma"


@pytest.mark.parametrize("board,words", [("zcu104", ["linux,cma", "not a cma= boot argument"]),
                                         ("pynq-z2", ["linux,cma"]), ("kv260", ["cma=", "1000 MiB"])])
def test_cma_error_says_how_much_and_how(board, words):
    from types import SimpleNamespace
    from mmfree import driver as drv
    from mmfree.errors import ModelTooLarge
    cfg = SimpleNamespace(hidden_size=2560, intermediate_size=6912, vocab_size=32000, num_hidden_layers=32)
    limits = {"max_d": 4096, "max_inter": 8192, "max_vocab": 32000, "max_layers": 32}
    with pytest.raises(ModelTooLarge) as e:
        drv.check_fits(cfg, "2bit", limits, 512 * 2**20, board=board)
    msg = str(e.value)
    assert "needs 786.0 MiB" in msg and "512.0 MiB are free" in msg and "275 MiB more are needed" in msg
    for w in words:
        assert w in msg, msg


def test_kr260_is_a_kv260(tmp_path):
    from mmfree import boards
    assert boards.normalize("KR260") == "kv260"
    assert boards.detect_board(environ={"BOARD": "KR260"}, root=str(tmp_path)) == "kv260"
    dt = tmp_path / "proc" / "device-tree"
    dt.mkdir(parents=True)
    (dt / "model").write_bytes(b"ZynqMP KR260 revB\x00")
    assert boards.detect_board(environ={}, root=str(tmp_path)) == "kv260"


def test_driver_goes_through_pynq_when_asked(csim_lib, packed_cache):
    """Under `make board-compat` (MMFREE_EMU_VIA_PYNQ=1, the real pynq installed) the kernel IP is a
    pynq.DefaultIP over a pynq.MMIO and every buffer a pynq PynqBuffer; otherwise the emulator's own."""
    from mmfree import emu
    acc = _acc(csim_lib, packed_cache)
    via = os.environ.get("MMFREE_EMU_VIA_PYNQ") == "1"
    if via:
        import pynq
        from pynq.buffer import PynqBuffer
        assert isinstance(acc.ip, pynq.DefaultIP) and type(acc.ip.mmio) is pynq.MMIO
        assert all(type(b) is PynqBuffer for b in acc.buffers)
        assert acc.overlay.device.has_capability("REGISTER_RW")
    else:
        assert all(isinstance(b, emu.EmuBuffer) for b in acc.buffers)
    logits = acc.step(2)
    assert logits.shape == (acc.vocab,)
    n = acc.overlay.memory.buffers()
    acc.close()
    assert n > 0 and acc.overlay.memory.buffers() == 0       # freebuffer returned every block


def test_python_sources_parse_as_python_310():
    """The board images run Python 3.10: no newer syntax anywhere in python/ (make board-compat also
    compiles them with a real 3.10 where the machine has one)."""
    import ast
    import glob
    files = glob.glob(os.path.join(ROOT, "python", "mmfree", "**", "*.py"), recursive=True)
    assert len(files) > 20
    for f in files:
        ast.parse(open(f, encoding="utf-8").read(), filename=f, feature_version=(3, 10))


def test_packaging_metadata_has_one_source():
    """setup.cfg holds the metadata (setuptools 59.6 reads it; it ignores pyproject's [project]); pyproject
    has only the build system; pynq is never a requirement pip could upgrade; the board extra brings
    tokenizers and numpy<2."""
    import configparser
    import re
    text = open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8").read()
    assert not re.search(r"^\[project", text, re.M) and re.search(r"^\[build-system\]", text, re.M)
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"), encoding="utf-8")
    assert cfg["metadata"]["name"] == "mmfree" and cfg["metadata"]["version"] == "attr: mmfree.__version__"
    reqs = " ".join(cfg["options"]["install_requires"].split() +
                    [r for k in cfg["options.extras_require"] for r in cfg["options.extras_require"][k].split()])
    assert "pynq" not in reqs
    assert cfg["options.extras_require"]["board"].split() == ["tokenizers", "numpy<2"]
    assert cfg["options.entry_points"]["console_scripts"].split() == ["mmfree", "=", "mmfree.cli:main"]
    assert cfg["options"]["python_requires"] == ">=3.10"


def _hwmon(root, n, name, microwatts):
    d = root / f"hwmon{n}"
    d.mkdir(parents=True)
    (d / "name").write_text(name + "\n")
    (d / "power1_input").write_text(f"{microwatts}\n")


def test_kv260_takes_the_ina260_first_and_says_what_it_measures(tmp_path):
    from mmfree import power
    _hwmon(tmp_path, 0, "ina226", 1_000_000)            # another INA on the bus: not the SOM input
    _hwmon(tmp_path, 1, "ina260_u14", 4_870_000)
    tried = power.probe_sensors(hwmon_root=str(tmp_path), powercap_root=str(tmp_path), try_pynq=True,
                                try_nvml=False, board="kv260")
    kind, s, why = tried[0]
    assert kind == "kv260:hwmon" and s.name == "hwmon:ina260_u14"
    assert s.read_watts() == pytest.approx(4.87)
    assert s.measures.startswith("kv260: SOM +5 V input (VCC_SOM)") and "not the carrier" in s.measures
    assert "measures kv260: SOM +5 V input" in why


def test_zcu104_takes_the_12v_rail_by_name():
    from mmfree import power
    from test_power import zcu104_rails
    s = power.PynqRailSensor(rails=["12V"], rails_dict=zcu104_rails())
    assert s.read_watts() == pytest.approx(13.75)
    assert s.measures.startswith("zcu104: whole-board 12 V input")
    s2 = power.PynqRailSensor(rails=["INT", "1V8"], rails_dict=zcu104_rails())
    assert s2.measures == "the sum of the regulated rails INT, 1V8, not the board input"


def test_pynq_z2_says_it_has_no_sensor(tmp_path):
    from mmfree import power
    tried = power.probe_sensors(hwmon_root=str(tmp_path), powercap_root=str(tmp_path), try_pynq=False,
                                try_nvml=False, board="pynq-z2")
    assert tried[0][0] == "pynq-z2:none" and tried[0][1] is None
    assert "no on-board power sensor" in tried[0][2] and "external" in tried[0][2]
    assert power.auto_sensor(hwmon_root=str(tmp_path), powercap_root=str(tmp_path), try_pynq=False,
                             try_nvml=False, board="pynq-z2") is None


def test_boards_md_walkthrough_matches_what_is_tested(csim_lib, packed_cache):
    """docs/boards.md shows the install commands make board-compat runs and the driver's real messages."""
    import re
    from types import SimpleNamespace
    from mmfree import driver as drv
    from mmfree import emu
    doc = open(os.path.join(ROOT, "docs", "boards.md"), encoding="utf-8").read()
    script = open(os.path.join(ROOT, "scripts", "board_compat.sh"), encoding="utf-8").read()
    for cmd in ('python3 -m pip install -e ".[board]"', "--no-build-isolation --no-deps -e ."):
        assert cmd in doc and cmd in script, cmd
    assert not re.search(r"reference/|DESIGN\.md|\.\./shared", doc)       # only repo files and public sources
    _, path = packed_cache("tiny", "2bit")
    msgs = []
    for ident in ("stale", {"ID_CONFIG": 2 | 64 << 8 | 16 << 16}):
        with pytest.raises(drv.StaleOverlay) as e:
            drv.Accelerator(emu.Overlay(board=BOARD, lib=csim_lib, kernel_identity=ident), path)
        msgs.append(str(e.value))
    msgs.append(drv.check_clock(333.333, 250.0, "kv260"))
    cfg = SimpleNamespace(hidden_size=2560, intermediate_size=6912, vocab_size=32000, num_hidden_layers=32)
    with pytest.raises(Exception) as e:
        drv.check_fits(cfg, "base3", {}, 475 * 2**20, board="zcu104")
    msgs.append(str(e.value))
    for m in msgs:
        assert m in doc, m


def test_pl_clock_through_pynq_clocks_when_asked(csim_lib, packed_cache):
    """Under make board-compat the PL clock comes from pynq's own Clocks code reading the emulated CRL_APB
    registers (IOPLL 1000 MHz on a KV260): 300 MHz asked of the image comes out at 1000/3, as on a board."""
    if os.environ.get("MMFREE_EMU_VIA_PYNQ") != "1":
        from mmfree import driver as drv
        acc = _acc(csim_lib, packed_cache)
        assert acc.clock_mhz == 250.0 and drv.read_pl_clock(acc.overlay) == 250.0    # the emulator's stand-in
        return
    import pynq
    acc = _acc(csim_lib, packed_cache)
    assert acc.overlay.fclk_mhz is None                    # nothing but pynq.Clocks answers
    assert acc.clock_mhz == pytest.approx(249.9975) and pynq.Clocks.fclk0_mhz == pytest.approx(249.9975)
    assert acc.clock_warning is None
    with pytest.warns(RuntimeWarning, match="PL clock 0 runs at 333.330 MHz, the overlay was built for 250.000"):
        acc2 = _acc(csim_lib, packed_cache, fclk_mhz=300.0)
    assert acc2.clock_mhz == pytest.approx(333.33)


def test_numpy2_allocate_failure_says_what_to_do(csim_lib, packed_cache):
    """pynq 3.0.1's PynqBuffer assigns ndarray.device, read-only in numpy 2: the driver names the fix."""
    from mmfree import driver as drv
    from mmfree import emu
    from mmfree.errors import DeviceError
    _, path = packed_cache("tiny", "2bit")

    def allocate(shape, dtype, **kw):
        raise AttributeError("attribute 'device' of 'numpy.ndarray' objects is not writable")

    with pytest.raises(DeviceError, match=r'needs numpy<2: run python3 -m pip install "numpy<2"'):
        drv.Accelerator(emu.Overlay(board=BOARD, lib=csim_lib), path, allocate=allocate)
