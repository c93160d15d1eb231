"""Cycle model (python/mmfree/cycles.py) against the C-simulation loop-trip counters, and the table."""

import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
sys.path.insert(0, HERE)

from mmfree import csim, cycles  # noqa: E402
from test_csim_kernel import csim_build  # noqa: E402,F401  (session fixture: make csim)


def _random_call(lib, op, d, inter, vocab, packing, seed=0):
    rng = np.random.default_rng(seed)
    mem = csim.Memory()
    if op == csim.OP_LAYER:
        lay = csim.layer_layout(d, inter, packing)
    else:
        lay = csim.head_layout(d, vocab, packing)
    blob = rng.integers(0, 243 if packing == "base3" else 256, lay["bytes"], dtype=np.uint8)
    prm = np.zeros(lay["floats"], np.float32)
    prm[:6] = 0.01
    prm[8:] = rng.uniform(0.5, 1.5, prm.size - 8)
    blob[lay["params"]:] = prm.view(np.uint8)
    b = mem.alloc(blob)
    x = mem.alloc(rng.standard_normal(csim.pad4(d)).astype(np.float32))
    h = mem.alloc(np.zeros(csim.pad4(d), np.float32))
    out = mem.alloc(np.zeros(csim.pad4(vocab), np.float32))
    emb = mem.alloc(rng.integers(0, 1 << 16, vocab * d, dtype=np.uint16))
    regs = csim.regs_image({"OP": op, "D": d, "INTER": inter, "VOCAB": vocab, "PACKING": csim.PACKING_CODE[packing],
                            "TOKEN": vocab - 1, "X_ADDR": x.addr, "H_ADDR": h.addr, "OUT_ADDR": out.addr,
                            "EMB_ADDR": emb.addr, **{f"W{p}_ADDR": b.addr for p in range(lib.config["ports"])}})
    lib.reset_counters()
    lib.call(regs, mem.resolve)
    return lib.counters()


@pytest.mark.parametrize("packing", ["2bit", "base3"])
@pytest.mark.parametrize("op,d,inter,vocab", [
    ("embed", 70, 150, 37), ("layer", 70, 150, 37), ("head", 70, 150, 37),
    ("layer", 200, 344, 301), ("layer", 1024, 2816, 32000),   # a 370M-shaped layer
    ("head", 48, 128, 32000),                                  # lm_head in several row chunks
])
def test_trip_counts_match_csim_counters(csim_build, op, d, inter, vocab, packing):  # noqa: F811
    lib = csim.load()
    m = cycles.Machine(lib.config["board"])
    assert (m.ports, m.port_bytes * 8) == (lib.config["ports"], lib.config["port_bits"])
    assert m.head_chunk == lib.config["head_chunk"] and m.lanes == lib.config["vec_lanes"]
    code = {"embed": csim.OP_EMBED, "layer": csim.OP_LAYER, "head": csim.OP_HEAD}[op]
    got = _random_call(lib, code, d, inter, vocab, packing)
    want = m.trips(op, d, inter, vocab, packing)
    assert got == want
    if op == "head" and vocab > m.head_chunk:
        assert want["mv"][1] > 1


def test_constants_come_from_the_one_places():
    lib_consts = cycles.pipeline_constants()
    assert set(lib_consts) == {"vec_lanes", "mv_depth", "vec_depth", "red_ii", "red_depth", "mem_depth"}
    m = cycles.Machine("kv260")
    b = cycles.boards()["kv260"]
    assert m.ports == b["weight_ports"] and m.port_bytes * 8 == b["port_bits"]


def test_table_kv260():
    rows = {(r["board"], r["model"], r["packing"]): r for r in cycles.table()}
    assert len(rows) == 3 * 3 * 2
    r = rows[("kv260", "1.3B", "base3")]
    # the weight stream: one 128-bit beat per port per cycle; 4 ports at 300 MHz carry 19.2 GB/s,
    # exactly the DDR peak, so the stream alone takes the DDR time of the code bytes
    assert r["port_s"] <= r["ddr_s"]
    # everything beyond weight streaming stays under 10% of the token's cycles (next issue's budget)
    assert r["overhead"] < 0.10
    for (board, model, packing), r in rows.items():
        assert r["stream_cycles"] < r["cycles"]
        assert r["binds"] in ("compute", "DDR")
    assert not rows[("pynq-z2", "1.3B", "base3")]["fits"]
    assert rows[("pynq-z2", "370M", "base3")]["fits"]
