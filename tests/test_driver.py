"""mmfree.driver: register map against the HLS sources, DDR layout against csim.py, the driver
against the emulated overlay end to end (registers, flush/invalidate), fit checks before anything runs."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

BOARD = "kv260"
REGS_H = os.path.join(ROOT, "hls", "include", "mmfree_regs.h")
KERNEL_CPP = os.path.join(ROOT, "hls", "mmfree_kernel", "mmfree_kernel.cpp")



def _defines():
    out = {}
    for line in open(REGS_H, encoding="utf-8"):
        m = re.match(r"\s*#define\s+MMFREE_(\w+)\s+(0x[0-9a-fA-F]+|\d+)\b", line)
        if m:
            out[m.group(1)] = int(m.group(2), 0)
    return out


def test_register_map_matches_header():
    from mmfree import driver as drv

    d = _defines()
    regs = {k[4:]: v for k, v in d.items() if k.startswith("REG_") and k != "REG_SPAN"}
    assert regs == drv.REGISTERS
    assert d["REG_SPAN"] == drv.REG_SPAN
    assert d["REGS_VERSION"] == drv.REGS_VERSION
    assert d["MAX_WEIGHT_PORT_REGS"] == drv.MAX_WEIGHT_PORT_REGS
    assert (d["OP_EMBED"], d["OP_LAYER"], d["OP_HEAD"]) == (drv.OP_EMBED, drv.OP_LAYER, drv.OP_HEAD)
    assert (d["OP_BODY"], d["OP_TOKEN"]) == (drv.OP_BODY, drv.OP_TOKEN) == (3, 4)
    # version 4: the identity block at 0xc0..0xfc (data words every 8 bytes: ap_vld at +4), span 0x100;
    # the version-3 offsets unchanged
    assert d["REGS_VERSION"] == 4 and drv.REGISTERS["LAYERS"] == 0xB8 and drv.REG_SPAN == 0x100
    ids = sorted(v for k, v in drv.REGISTERS.items() if k.startswith("ID_"))
    assert ids == list(range(0xC0, 0x100, 8))
    assert d["ID_MAGIC"] == drv.ID_MAGIC == 0x4D4D4652 and d["OP_IDENT"] == drv.OP_IDENT == 5
    assert {k: d["ID_CONFIG_" + k.upper() + "_SHIFT"] for k in ("ports", "port_bits", "lanes", "sig_lanes")} == \
        {"ports": drv.ID_CONFIG_SHIFTS["weight_ports"], "port_bits": drv.ID_CONFIG_SHIFTS["port_bits"],
         "lanes": drv.ID_CONFIG_SHIFTS["float_lanes"], "sig_lanes": drv.ID_CONFIG_SHIFTS["sigmoid_lanes"]}
    assert drv.REGISTERS["W5_ADDR"] == 0xAC and drv.REGISTERS["TOKEN"] == 0x38
    assert max(v + (8 if k.endswith("_ADDR") else 4) for k, v in drv.REGISTERS.items()) <= drv.REG_SPAN
    from mmfree import boards
    assert boards.kernel()["ctrl_bytes"] == drv.REG_SPAN                # the s_axilite span boards.json states
    assert drv.REG_SPAN <= 1 << 8                                     # C_S_AXI_CONTROL_ADDR_WIDTH 8 still holds
    assert {"2bit": d["PACK_2BIT"], "base3": d["PACK_BASE3"]} == drv.PACKING_CODE
    # 64-bit address registers: the high word never collides with another register
    addr = sorted(v for k, v in drv.REGISTERS.items() if k.endswith("_ADDR"))
    used = sorted(v for k, v in drv.REGISTERS.items() if not k.endswith("_ADDR")) + addr + [a + 4 for a in addr]
    used += [v + 4 for k, v in drv.REGISTERS.items() if k.startswith("ID_")]   # output scalars: ap_vld word
    assert len(used) == len(set(used))


def test_register_map_matches_interface_pragmas():
    from mmfree import driver as drv

    src = open(KERNEL_CPP, encoding="utf-8").read()
    pragmas = dict((p, int(o, 0)) for p, o in
                   re.findall(r"#pragma\s+HLS\s+INTERFACE\s+s_axilite\s+port=(\w+)\s+offset=(0x[0-9a-fA-F]+|\d+)", src))
    names = {"op": "OP", "d": "D", "inter": "INTER", "vocab": "VOCAB", "packing": "PACKING", "token": "TOKEN",
             "x": "X_ADDR", "h": "H_ADDR", "emb": "EMB_ADDR", "out": "OUT_ADDR", "layers": "LAYERS"}
    names.update({f"w{p}": f"W{p}_ADDR" for p in range(drv.MAX_WEIGHT_PORT_REGS)})
    names.update({k.lower(): k for k in drv.REGISTERS if k.startswith("ID_")})   # id_magic -> ID_MAGIC, ...
    assert set(pragmas) <= set(names), sorted(pragmas)
    assert {"w0", "op", "x", "h", "emb", "out", "token", "layers"} <= set(pragmas)
    assert {k for k in names if k.startswith("id_")} <= set(pragmas)     # every identity word has its pragma
    for port, off in pragmas.items():
        assert drv.REGISTERS[names[port]] == off, port


def test_vlnv_and_bindto():
    from mmfree import driver as drv

    assert drv.MMFreeKernel.bindto == ["xilinx.com:hls:mmfree_kernel:1.0"]
    src = open(KERNEL_CPP, encoding="utf-8").read()
    assert drv.VLNV in src


@pytest.mark.parametrize("shape,packing", [("odd", "2bit"), ("wide", "base3"), ("tiny", "base3")])
def test_layout_and_blobs_match_csim(csim_lib, packed_cache, shape, packing):
    from mmfree import csim
    from mmfree import driver as drv
    from mmfree import layout
    from mmfree import packed as pk

    _, path = packed_cache(shape, packing)
    m = pk.load(path)
    c = m.config
    d, inter, v = c.hidden_size, c.intermediate_size, c.vocab_size
    P = csim_lib.config["ports"]
    # the driver's layout is mmfree.layout, checked here against the C++ (mmfree_layout.h)
    assert drv.layer_layout is layout.layer_layout and csim.layer_layout is layout.layer_layout
    assert layout.layer_layout(d, inter, packing)["bytes"] == csim_lib.layer_blob_bytes(d, inter, packing)
    assert layout.head_layout(d, v, packing)["bytes"] == csim_lib.head_blob_bytes(d, v, packing)
    for li in range(c.num_hidden_layers):   # filling a dirty buffer in place == a fresh blob
        blob = np.full(layout.layer_layout(d, inter, packing)["bytes"], 0xAB, np.uint8)
        layout.pack_layer_blob(m, li, blob, ports=P)
        assert np.array_equal(blob, layout.pack_layer_blob(m, li, ports=P))
    head = np.full(layout.head_layout(d, v, packing)["bytes"], 0xAB, np.uint8)
    layout.pack_head_blob(m, head, ports=P)
    assert np.array_equal(head, layout.pack_head_blob(m, ports=P))
    # the weights arena of BODY/TOKEN
    L = c.num_hidden_layers
    lay = layout.arena_layout(L, d, inter, v, packing)
    assert lay["stride"] == layout.layer_stride(d, inter, packing) == csim_lib.layer_stride(d, inter, packing)
    assert lay["stride"] % 4096 == 0 and 0 <= lay["stride"] - layout.layer_layout(d, inter, packing)["bytes"] < 4096
    assert lay["head"] == L * lay["stride"] == csim_lib.arena_head_offset(L, d, inter, packing)
    assert lay["bytes"] == csim_lib.arena_bytes(L, d, inter, v, packing)
    assert csim_lib.state_bytes(L, d) == layout.state_bytes(L, d) == 4 * L * layout.pad4(d)
    arena = np.full(lay["bytes"], 0xAB, np.uint8)
    layout.pack_arena(m, arena, ports=P)
    assert np.array_equal(arena, layout.pack_arena(m, ports=P))


@pytest.mark.parametrize("d,inter", [(1024, 2816), (2048, 5632), (2560, 6912), (48, 128)])
@pytest.mark.parametrize("packing", ["2bit", "base3"])
def test_arena_layout_released_sizes(csim_lib, d, inter, packing):
    from mmfree import csim
    from mmfree import driver as drv

    for L in (1, 24, 32):
        lay = drv.arena_layout(L, d, inter, 32000, packing)
        assert lay == csim.arena_layout(L, d, inter, 32000, packing)
        assert lay["bytes"] == csim_lib.arena_bytes(L, d, inter, 32000, packing)
        assert lay["head"] == csim_lib.arena_head_offset(L, d, inter, packing)


def test_driver_end_to_end_registers_and_cache_ops(csim_lib, packed_cache):
    """Default (arena) mode: constants, W* and H_ADDR written once at load; one TOKEN call per decode
    token, BODY calls for the prompt but its last token."""
    from mmfree import driver as drv
    from mmfree import emu
    from mmfree.golden import GoldenModel

    _, path = packed_cache("wide", "2bit")
    ol = emu.Overlay(board=BOARD, lib=csim_lib)
    regs = ol.registers
    regs.record = True
    acc = drv.Accelerator(ol, path)
    assert acc.mode == "token" and acc.fallback_reason is None
    L = acc.n_layers
    n_buf = 5  # embeddings, the weights arena, x, h, logits
    assert ol.memory.buffers() == n_buf
    assert ol.flushes == n_buf and ol.invalidates == 0          # every buffer flushed once after loading
    init = dict(regs.writes)
    R = drv.REGISTERS
    # 64-bit addresses as two 32-bit words, low word first
    for name, buf in (("X_ADDR", acc.x), ("EMB_ADDR", acc.emb), ("OUT_ADDR", acc.out), ("H_ADDR", acc.h)):
        assert init[R[name]] == buf.physical_address & 0xFFFFFFFF
        assert init[R[name] + 4] == buf.physical_address >> 32
    for p in range(csim_lib.config["ports"]):   # every weight port gets the arena address
        assert init[R[f"W{p}_ADDR"]] == acc.weights.physical_address & 0xFFFFFFFF
        assert init[R[f"W{p}_ADDR"] + 4] == acc.weights.physical_address >> 32
    assert init[R["D"]] == acc.d and init[R["INTER"]] == acc.inter and init[R["VOCAB"]] == acc.vocab
    assert init[R["PACKING"]] == 0 and init[R["LAYERS"]] == L
    lay = drv.arena_layout(L, acc.d, acc.inter, acc.vocab, "2bit")
    assert acc.blob_addr == [acc.weights.physical_address + li * lay["stride"] for li in range(L)]
    assert acc.head_addr == acc.weights.physical_address + L * lay["stride"]
    regs.writes.clear()

    g = GoldenModel(path)
    assert np.array_equal(acc.step(7), g.step(7))
    assert regs.writes == [(R["OP"], drv.OP_TOKEN), (R["TOKEN"], 7), (R["CTRL"], drv.AP_START)]
    assert regs.ops == {drv.OP_TOKEN: 1}
    assert ol.invalidates == 1                   # logits invalidated before reading
    regs.writes.clear()
    assert np.array_equal(acc.step(9), g.step(9))
    assert regs.writes == [(R["TOKEN"], 9), (R["CTRL"], drv.AP_START)]   # OP unchanged: not rewritten

    # prefill: BODY for every prompt token but the last, TOKEN for the last
    regs.ops.clear()
    acc.reset()
    g.reset()
    assert ol.flushes == n_buf + 1               # the zeroed state flushed
    assert np.array_equal(acc.prefill([1, 2, 3]), g.forward([1, 2, 3])[-1])
    assert regs.ops == {drv.OP_BODY: 2, drv.OP_TOKEN: 1}
    assert np.array_equal(acc.state(), g.h)
    acc.close()
    assert ol.memory.buffers() == 0


def test_driver_mmio_per_decode_token(csim_lib, packed_cache):
    """A decode token costs a handful of MMIO accesses (was about 230 for a 24-layer model at v2)."""
    from mmfree import driver as drv
    from mmfree import emu

    _, path = packed_cache("wide", "base3")
    ol = emu.Overlay(board=BOARD, lib=csim_lib)
    acc = drv.Accelerator(ol, path)
    regs = ol.registers
    tok = int(np.argmax(acc.prefill([1, 2, 3])))
    r0, w0 = regs.n_reads, regs.n_writes
    n = 6
    for i in range(n):
        tok = int(np.argmax(acc.step((tok + i) % acc.vocab)))
    counts = {"r": regs.n_reads - r0, "w": regs.n_writes - w0}
    assert counts["w"] <= 2 * n and counts["r"] <= 1 * n, counts   # TOKEN + CTRL start; one CTRL poll
    assert counts["w"] + counts["r"] <= 3 * n
    assert regs.starts == 2 + 1 + n                                # 2 BODY + 1 TOKEN + n TOKEN
    acc.close()


def test_driver_per_op_mode_registers(csim_lib, packed_cache):
    """arena=False (the fallback schedule): EMBED, one LAYER per layer, HEAD, per-layer buffers."""
    from mmfree import driver as drv
    from mmfree import emu
    from mmfree.golden import GoldenModel

    _, path = packed_cache("wide", "2bit")
    ol = emu.Overlay(board=BOARD, lib=csim_lib)
    regs = ol.registers
    regs.record = True
    acc = drv.Accelerator(ol, path, arena=False)
    assert acc.mode == "per-op" and acc.weights is None and acc.fallback_reason is None
    L = acc.n_layers
    assert ol.memory.buffers() == L + 5  # embeddings, L blobs, head, x, h, logits
    R = drv.REGISTERS
    regs.writes.clear()
    g = GoldenModel(path)
    assert np.array_equal(acc.step(7), g.step(7))
    ops = [v for off, v in regs.writes if off == R["OP"]]
    assert ops == [drv.OP_EMBED, drv.OP_LAYER, drv.OP_HEAD]   # OP is only rewritten when it changes
    starts = [v for off, v in regs.writes if off == R["CTRL"]]
    assert starts == [drv.AP_START] * (L + 2)
    assert regs.ops == {drv.OP_EMBED: 1, drv.OP_LAYER: L, drv.OP_HEAD: 1}
    h_lo = [v for off, v in regs.writes if off == R["H_ADDR"]]
    assert h_lo == [(acc.h.physical_address + li * 4 * drv.pad4(acc.d)) & 0xFFFFFFFF for li in range(L)]
    for p in range(csim_lib.config["ports"]):   # every weight port gets the blob address
        w = [v for off, v in regs.writes if off == R[f"W{p}_ADDR"]]
        assert w == [b.physical_address & 0xFFFFFFFF for b in acc.blobs] + [acc.head.physical_address & 0xFFFFFFFF]
    regs.ops.clear()
    acc.reset()
    g.reset()
    assert np.array_equal(acc.prefill([1, 2, 3]), g.forward([1, 2, 3])[-1])
    assert regs.ops == {drv.OP_EMBED: 3, drv.OP_LAYER: 3 * L, drv.OP_HEAD: 1}
    acc.close()
    assert ol.memory.buffers() == 0


def test_per_op_calls_then_token_calls(csim_lib, packed_cache):
    """The per-op path (`_run`, as notebook 03 uses it) moves W*/H_ADDR; the next TOKEN call points them
    back at the arena, and the results stay the golden model's."""
    from mmfree import driver as drv
    from mmfree import emu
    from mmfree.golden import GoldenModel

    _, path = packed_cache("odd", "base3")
    acc = drv.Accelerator(emu.Overlay(board=BOARD, lib=csim_lib), path)
    g = GoldenModel(path)
    for t, tok in enumerate([4, 8]):
        acc._run(drv.OP_EMBED, f"EMBED token {t}", token=tok)
        for li in range(acc.n_layers):
            acc._run(drv.OP_LAYER, f"LAYER {li} token {t}", weights=acc.blob_addr[li], h=acc.h_addr[li])
        acc.tokens += 1
    assert np.array_equal(acc._head(), g.forward([4, 8])[-1])
    for tok in (3, 0, 5):
        assert np.array_equal(acc.step(tok), g.step(tok))
    assert acc.ip.read_reg("W0_ADDR") == acc.weights.physical_address & 0xFFFFFFFF
    acc.close()


def test_token_out_of_vocab(csim_lib, packed_cache):
    from mmfree import driver as drv
    from mmfree import emu
    from mmfree.errors import ConfigError

    _, path = packed_cache("tiny", "2bit")
    acc = drv.Accelerator(emu.Overlay(board=BOARD, lib=csim_lib), path)
    with pytest.raises(ConfigError, match="vocabulary"):
        acc.step(acc.vocab)


@pytest.mark.parametrize("key,value,what", [("max_d", 64, "hidden_size=96"), ("max_inter", 128, "intermediate_size"),
                                            ("max_vocab", 500, "vocab_size=515"), ("max_layers", 3, "num_hidden_layers=4")])
def test_model_beyond_maxima_refused_before_anything(csim_lib, packed_cache, key, value, what):
    from mmfree import driver as drv
    from mmfree import emu
    from mmfree.errors import ModelTooLarge

    _, path = packed_cache("wide", "base3")
    ol = emu.Overlay(board=BOARD, lib=csim_lib)
    ol.registers.record = True
    limits = dict(ol.mmfree_limits, **{key: value})
    with pytest.raises(ModelTooLarge, match=what) as e:
        drv.Accelerator(ol, path, limits=limits)
    assert key in str(e.value)
    # only the identity call ran (OP_IDENT, start): no buffer, no compute op
    assert ol.memory.buffers() == 0 and ol.registers.starts == 0 and ol.registers.idents == 1
    assert ol.registers.writes == [(drv.REGISTERS["OP"], drv.OP_IDENT), (drv.REGISTERS["CTRL"], drv.AP_START)]


def test_overlay_maxima_from_emu_and_boards(csim_lib, packed_cache):
    from mmfree import driver as drv
    from mmfree import emu
    from mmfree.errors import ModelTooLarge

    ol = emu.Overlay(board=BOARD, lib=csim_lib, max_layers=2)   # the emulator reports its build's maxima
    _, path = packed_cache("odd", "2bit")                       # 3 layers
    with pytest.raises(ModelTooLarge, match="max_layers=2"):
        drv.Accelerator(ol, path)
    lim = drv.overlay_limits(None, "pynq-z2")
    assert lim == {"max_d": 1024, "max_inter": 2816, "max_vocab": 32000, "max_layers": 24, "weight_ports": 2}
    big = drv.board_params("kv260")
    assert ol.mmfree_limits["max_d"] == big["max_d"] and ol.mmfree_limits["weight_ports"] == csim_lib.config["ports"]


def test_model_too_big_for_cma_refused(csim_lib, packed_cache):
    from mmfree import driver as drv
    from mmfree import emu
    from mmfree.errors import ModelTooLarge

    _, path = packed_cache("odd", "base3")
    ol = emu.Overlay(board=BOARD, lib=csim_lib, cma_bytes=256 * 1024)
    with pytest.raises(ModelTooLarge, match="CMA") as e:
        drv.Accelerator(ol, path)
    assert "MiB" in str(e.value)
    assert ol.memory.buffers() == 0 and ol.registers.starts == 0


def test_check_fits_370m_on_boards():
    """370M in base-3 fits a KV260's CMA; 2.7B is beyond the PYNQ-Z2 overlay (no file needed)."""
    from mmfree import driver as drv
    from mmfree.config import HGRNBitConfig
    from mmfree.errors import ModelTooLarge

    c370 = HGRNBitConfig(hidden_size=1024, num_hidden_layers=24, intermediate_size=2816, vocab_size=32000)
    need = drv.check_fits(c370, "base3", drv.overlay_limits(None, "kv260"), drv.board_params("kv260")["cma_bytes"])
    assert 100e6 < need < 200e6
    per_op = drv.check_fits(c370, "base3", drv.overlay_limits(None, "kv260"), drv.board_params("kv260")["cma_bytes"],
                            arena=False)
    assert need <= per_op < need + 24 * 8192   # the arena never needs more CMA than per-layer buffers
    c27 = HGRNBitConfig(hidden_size=2560, num_hidden_layers=32, intermediate_size=6912, vocab_size=32000)
    with pytest.raises(ModelTooLarge, match="max_d=1024"):
        drv.check_fits(c27, "2bit", drv.overlay_limits(None, "pynq-z2"), 1 << 40)
    with pytest.raises(ModelTooLarge, match="CMA"):
        drv.check_fits(c370, "2bit", drv.overlay_limits(None, "pynq-z2"), drv.board_params("pynq-z2")["cma_bytes"])


class _FakeMMIO:
    """A register file that never finishes: ap_start stays set (kernel never takes the start)."""

    def __init__(self, ctrl):
        self.ctrl, self.writes = ctrl, []

    def read(self, offset=0, length=4):
        return self.ctrl if offset == 0 else 0

    def write(self, offset, value):
        self.writes.append((offset, value))
        if offset == 0 and value & 1:
            self.ctrl |= 1


def test_kernel_class_over_any_mmio():
    from mmfree import driver as drv
    from mmfree.errors import KernelTimeout

    mm = _FakeMMIO(ctrl=drv.AP_IDLE)
    ip = drv.MMFreeKernel({"mmio": mm, "fullpath": "k"})
    ip.write_addr("W0_ADDR", 0x1_2345_6780)
    assert mm.writes == [(0x70, 0x23456780), (0x74, 0x1)]
    ip.write_addr("W0_ADDR", 0x1_2345_6790)          # high word unchanged: one write
    assert mm.writes[-1] == (0x70, 0x23456790) and len(mm.writes) == 3
    with pytest.raises(ValueError):
        ip.write_reg("D", -1)
    ip.start()
    with pytest.raises(KernelTimeout, match="ap_start never taken"):
        ip.wait(0.01, "op HEAD")
    # finished: ap_done or idle with start taken
    ip2 = drv.MMFreeKernel({"mmio": _FakeMMIO(ctrl=drv.AP_DONE)})
    ip2.wait(0.01)


def test_module_imports_without_pynq():
    code = ("import sys; sys.modules['pynq'] = None; import mmfree.driver as d; "
            "assert not d.HAVE_PYNQ; print(d.MMFreeKernel.__mro__[1].__name__)")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"), MMFREE_PYNQ="1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "_IPBase"


FAKE_PYNQ = '''
class _MMIO:
    def __init__(self, base, length):
        self.regs = {}
    def read(self, offset=0, length=4):
        return self.regs.get(offset, 4)
    def write(self, offset, value):
        self.regs[offset] = value

class DefaultIP:
    _registry = {}
    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        for v in getattr(cls, "bindto", []):
            DefaultIP._registry[v] = cls
    def __init__(self, description):
        self.description = description
        self.mmio = _MMIO(description["phys_addr"], description["addr_range"])
    def read(self, offset=0):
        return self.mmio.read(offset)
    def write(self, offset, value):
        self.mmio.write(offset, value)
'''


def test_binds_to_a_pynq_defaultip(csim_lib, packed_cache, tmp_path):
    """With pynq importable, MMFreeKernel is a DefaultIP subclass registered by VLNV; the same class
    still runs over the emulator's register file."""
    (tmp_path / "pynq").mkdir()
    (tmp_path / "pynq" / "__init__.py").write_text(FAKE_PYNQ)
    _, path = packed_cache("tiny", "base3")
    code = f"""
import numpy as np, pynq
import mmfree.driver as d
from mmfree import emu
from mmfree.golden import GoldenModel
assert d.HAVE_PYNQ and issubclass(d.MMFreeKernel, pynq.DefaultIP)
assert pynq.DefaultIP._registry[d.VLNV] is d.MMFreeKernel
ip = d.MMFreeKernel({{"phys_addr": 0xA0000000, "addr_range": 0x10000}})   # a board description
assert type(ip.mmio).__name__ == "_MMIO" and ip.ctrl() == 4
acc = d.Accelerator(emu.Overlay(board="{BOARD}"), {path!r})
assert np.array_equal(acc.step(3), GoldenModel({path!r}).step(3))
print("ok")
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.path.join(ROOT, "python")]), MMFREE_PYNQ="1",
               MMFREE_EMU_VIA_PYNQ="0")   # this test stubs pynq itself
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr
