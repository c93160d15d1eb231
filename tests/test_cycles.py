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
    assert m.head_rows == lib.config["head_rows"] and m.lanes == lib.config["vec_lanes"]
    assert (m.float_lanes, m.sigmoid_lanes) == (lib.config["float_lanes"], lib.config["sigmoid_lanes"])
    code = {"embed": csim.OP_EMBED, "layer": csim.OP_LAYER, "head": csim.OP_HEAD}[op]
    got = _random_call(lib, code, d, inter, vocab, packing)
    want = m.trips(op, d, inter, vocab, packing)
    assert got == want
    if op == "head" and vocab > m.head_rows:
        assert want["mv"][1] > 1


@pytest.mark.parametrize("packing", ["2bit", "base3"])
@pytest.mark.parametrize("op,d,inter,vocab,layers", [
    ("body", 70, 150, 37, 1), ("body", 70, 150, 37, 3), ("token", 70, 150, 37, 2), ("token", 48, 128, 301, 3),
    ("token", 200, 344, 301, 2),
])
def test_whole_token_trips_match_csim_counters(csim_build, op, d, inter, vocab, layers, packing):  # noqa: F811
    """OP_BODY / OP_TOKEN on a random arena: the C-sim counters == trips(op, layers=L) == the sum of the
    single ops' trips (the same functions run; only the per-call cost differs)."""
    lib = csim.load()
    m = cycles.Machine(lib.config["board"])
    rng = np.random.default_rng(1)
    mem = csim.Memory()
    al = csim.arena_layout(layers, d, inter, vocab, packing)
    arena = rng.integers(0, 243 if packing == "base3" else 256, al["bytes"], dtype=np.uint8)
    for off, lay in [(o, csim.layer_layout(d, inter, packing)) for o in al["layers"]] + \
            [(al["head"], csim.head_layout(d, vocab, packing))]:
        prm = np.zeros(lay["floats"], np.float32)
        prm[:6] = 0.01
        prm[8:] = rng.uniform(0.5, 1.5, prm.size - 8)
        arena[off + lay["params"]:off + lay["bytes"]] = prm.view(np.uint8)
    w = mem.alloc(arena)
    x = mem.alloc(np.zeros(csim.pad4(d), np.float32))
    h = mem.alloc(np.zeros(layers * csim.pad4(d), np.float32))
    out = mem.alloc(np.zeros(csim.pad4(vocab), np.float32))
    emb = mem.alloc(rng.integers(0, 1 << 15, vocab * d, dtype=np.uint16))
    code = {"body": csim.OP_BODY, "token": csim.OP_TOKEN}[op]
    regs = csim.regs_image({"OP": code, "D": d, "INTER": inter, "VOCAB": vocab, "PACKING": csim.PACKING_CODE[packing],
                            "TOKEN": vocab - 1, "LAYERS": layers, "X_ADDR": x.addr, "H_ADDR": h.addr,
                            "OUT_ADDR": out.addr, "EMB_ADDR": emb.addr,
                            **{f"W{p}_ADDR": w.addr for p in range(lib.config["ports"])}})
    lib.reset_counters()
    lib.call(regs, mem.resolve)
    got = lib.counters()
    want = m.trips(op, d, inter, vocab, packing, layers=layers)
    assert got == want
    # the single ops' trips, less the x reads/writes a whole-token call keeps on chip between layers and head
    single = [m.trips("embed", d, inter, vocab, packing)] + [m.trips("layer", d, inter, vocab, packing)] * layers
    if op == "token":
        single.append(m.trips("head", d, inter, vocab, packing))
    summed = {c: tuple(map(sum, zip(*(s[c] for s in single)))) for c in cycles.CLASSES}
    x_beats = -(-d // (m.port_bytes // 4))
    skipped = layers + (1 if op == "token" else 0)   # x read by every layer, x written by all but the last, x read by the head
    skipped_loops = layers + (layers - 1) + (1 if op == "token" else 0)
    assert want["mem"] == (summed["mem"][0] - skipped_loops * x_beats, summed["mem"][1] - skipped_loops)
    assert skipped <= skipped_loops
    assert {c: want[c] for c in ("mv", "vec", "red")} == {c: summed[c] for c in ("mv", "vec", "red")}
    if op == "token":
        assert (out.array[:vocab].view(np.uint32) != 0).any()     # TOKEN wrote the logits (random data)


def test_per_call_cost():
    """One call per token (OP_TOKEN) pays the per-call cost once; the per-op schedule L + 2 times, and reads
    and writes x around every layer."""
    m = cycles.Machine("kv260")
    assert m.call_cycles == cycles.pipeline_constants()["call_cycles"] > 0
    d, L, inter, vocab = cycles.MODELS["1.3B"]
    one = m.token(d, L, inter, vocab, "base3")
    per_op = m.token(d, L, inter, vocab, "base3", calls=L + 2)
    assert one["calls"] == 1 and one["call_cycles"] == m.call_cycles
    assert per_op["call_cycles"] - one["call_cycles"] == (L + 1) * m.call_cycles
    # the per-op schedule also moves x through DDR around every layer (OP_TOKEN keeps it on chip)
    x_loops = 2 * L + 1 - (L - 1) - 1  # reads + writes per-op, less the one write OP_TOKEN also makes
    assert per_op["cycles"] - one["cycles"] > (L + 1) * m.call_cycles + x_loops * m.depth["mem"]
    assert per_op["stream_s"] == one["stream_s"] and per_op["overhead_s"] > one["overhead_s"]


def test_constants_come_from_the_one_places():
    lib_consts = cycles.pipeline_constants()
    assert set(lib_consts) == {"vec_lanes", "mv_depth", "vec_depth", "red_depth", "mem_depth", "call_cycles"}
    assert cycles.Machine("kv260").call_cycles == csim.load().config["call_cycles"]
    m = cycles.Machine("kv260")
    b = cycles.boards()["kv260"]
    assert m.ports == b["weight_ports"] and m.port_bytes * 8 == b["port_bits"]


def test_table_kv260():
    rows = {(r["board"], r["model"], r["packing"]): r for r in cycles.table()}
    assert len(rows) == 3 * 3 * 2
    for (board, model, packing), r in rows.items():
        assert r["stream_cycles"] < r["cycles"]
        assert r["binds"] in ("compute", "DDR")
        assert 0 < r["tok_s"] < r["ceiling_tok_s"]
    assert not rows[("pynq-z2", "1.3B", "base3")]["fits"]
    assert rows[("pynq-z2", "370M", "base3")]["fits"]


def test_model_reads_the_census():
    """The IIs of the cycle model are the census' reachable IIs: a loop the census finds at II 2 doubles its
    class' cycles; weight reads that are not burst-eligible make every beat wait for DDR."""
    import copy
    m = cycles.Machine("kv260")
    cen = m.census
    assert set(m.ii) == set(cycles.CLASSES) and all(v == 1 for v in m.ii.values())   # kernel v2: every loop at II 1
    d, L, inter, vocab = cycles.MODELS["1.3B"]
    base = m.token(d, L, inter, vocab, "base3")
    assert base["census"]["sources_sha"] == cen["sources_sha"]
    slow = copy.deepcopy(cen)
    for lp in slow["loops"]:
        if lp["class"] == "red":
            lp["reachable_ii"] = 2
    m2 = cycles.Machine("kv260", census=slow)
    r2 = m2.token(d, L, inter, vocab, "base3")
    tr = m.trips("token", d, inter, vocab, "base3", layers=L)
    assert r2["cycles"] - base["cycles"] == tr["red"][0]
    nob = copy.deepcopy(cen)
    nob["maxi"].append({"bundle": "gmem_w1", "loop": "x", "instance": "x", "direction": "read",
                        "burst_eligible": False, "reason": "conditional"})
    m3 = cycles.Machine("kv260", census=nob)
    assert m3.ii["mv"] == -(-m3.mem_depth // cen["bundles"]["gmem_w0"]["read_outstanding"]) > 1
    assert m3.token(d, L, inter, vocab, "base3")["tok_s"] < base["tok_s"] / 2


def test_kv260_weight_ports_keep_up_with_ddr():
    """On KV260 the weight ports (4 x 128 bit at the PL clock) carry at least what DDR delivers at the
    modeled efficiency, so the weight stream is DDR-bound, never port-bound."""
    m = cycles.Machine("kv260")
    assert m.ports == 4 and m.port_bps >= m.ddr_bps * cycles.DDR_EFFICIENCY
    for name, (d, L, inter, vocab) in cycles.MODELS.items():
        for packing in ("2bit", "base3"):
            r = m.token(d, L, inter, vocab, packing)
            assert r["stream_s"] == pytest.approx(r["code_bytes"] / (m.ddr_bps * cycles.DDR_EFFICIENCY))


def test_token_breakdown():
    m = cycles.Machine("kv260")
    d, L, inter, vocab = cycles.MODELS["1.3B"]
    r = m.token(d, L, inter, vocab, "base3")
    for k in ("stream_s", "overhead_s", "compute_s", "ddr_s", "binds", "token_s", "stream_fraction"):
        assert k in r, k
    # the stream runs at min(port capacity, DDR x efficiency); everything else does not overlap it
    assert r["stream_s"] == max(r["stream_cycles"] / m.clock_hz, r["code_bytes"] / (m.ddr_bps * r["ddr_efficiency"]))
    assert r["overhead_s"] == pytest.approx((r["cycles"] - r["stream_cycles"]) / m.clock_hz)
    assert r["token_s"] == pytest.approx(r["stream_s"] + r["overhead_s"])
    assert r["stream_fraction"] == pytest.approx(r["stream_s"] / r["token_s"])
    assert r["compute_s"] == pytest.approx(r["cycles"] / m.clock_hz)
    assert r["tok_s"] == pytest.approx(1 / r["token_s"])
    r1 = m.token(d, L, inter, vocab, "base3", ddr_efficiency=1.0)
    assert r1["stream_s"] < r["stream_s"]
    # PYNQ-Z2: 2 x 64-bit ports at 125 MHz = 2.0 GB/s < 2.1 GB/s DDR peak: ports bind the stream
    z = cycles.Machine("pynq-z2")
    assert z.ports == 2 and z.port_bps < z.ddr_bps


def test_main_prints_the_table():
    import subprocess
    r = subprocess.run([sys.executable, "-m", "mmfree.cycles"], capture_output=True, text=True,
                       cwd=os.path.join(os.path.dirname(HERE), "python"))
    assert r.returncode == 0, r.stderr
    assert "| kv260 |" in r.stdout and "| 1.3B | base3 |" in r.stdout and "stream fraction" in r.stdout
