"""Cycle model of mmfree_kernel (hls/): cycles per token from loop trip counts (model, not vendor-tool).

Every pipelined loop of the kernel belongs to one class; a loop of N iterations costs
``N * II + DEPTH`` cycles (II and DEPTH of its class), loops run one after another:

    mv   ternary matvec, flattened (ceil(rows / ports) x beats per row) loop, II = 1
    vec  elementwise vector pass, ceil(n / lanes) blocks, II = 1
    red  reduction pass (16-lane float sums), ceil(n / lanes) blocks, II = MMFREE_RED_II
    mem  DDR bursts of params, x, h, logits, embedding row, one beat per iteration, II = 1

plus a fixed cost per kernel call (MMFREE_CALL_CYCLES: the ap_ctrl_hs start/done handshake and the
scalar register reads), paid once per token with the whole-token op OP_TOKEN (register map v3; the
per-op schedule EMBED, L x LAYER, HEAD pays it L + 2 times).

``trips()`` gives the exact iteration and loop counts the C-simulation counters report
(tests/test_cycles.py checks them against hls/ through csim.py); the board's ports, port width
and clock come from python/mmfree/data/boards.json, the pipeline constants from
hls/include/mmfree_config.h (the one place for each).

Per token (``Machine.token``) the kernel is sequential: vector passes, parameter loads and pipeline
fills run between the weight streams, never under them. So a token takes

    stream_s   = the weight stream: max(matvec iterations / clock,
                                        code bytes / (DDR peak x ddr_efficiency))
                 i.e. the codes at min(port capacity, DDR bandwidth x efficiency)
    overhead_s = every other cycle (vec, red, mem classes, the matvec pipeline fills and the per-call
                 cost x calls per token) / clock
    token_s    = stream_s + overhead_s,    stream_fraction = stream_s / token_s

and, for the "which binds" question, compute_s = all cycles / clock (DDR infinitely fast) against
ddr_s = all bytes of a token at the DDR peak: "DDR" binds when ddr_s >= compute_s.

    python -m mmfree.cycles            # the table: boards x models x packings (mmfree.perf.projection_table,
                                       # the same figures as `mmfree bench --project`)
"""

import os
import re
from typing import Dict, Tuple

from . import layout
from . import packed as pk

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CONFIG_H = os.path.join(ROOT, "hls", "include", "mmfree_config.h")
CLASSES = ("mv", "vec", "red", "mem")
DDR_EFFICIENCY = 0.85  # fraction of the DDR peak a long sequential read stream gets (85-94% in practice: low end)

MODELS = {  # released sizes: (d, layers, I, vocab)
    "370M": (1024, 24, 2816, 32000),
    "1.3B": (2048, 24, 5632, 32000),
    "2.7B": (2560, 32, 6912, 32000),
}


def boards() -> Dict[str, dict]:
    """{name: parameters} of every board in boards.json (mmfree.boards)."""
    from . import boards as _boards
    return dict(_boards.load()[0])


def pipeline_constants(path: str = CONFIG_H) -> Dict[str, int]:
    """MMFREE_VEC_LANES, MV_DEPTH, VEC_DEPTH, RED_II, RED_DEPTH, MEM_DEPTH, CALL_CYCLES from the HLS header."""
    out = {}
    with open(path, "r", encoding="utf-8") as f:
        for line in f:
            m = re.match(r"#define\s+MMFREE_(VEC_LANES|MV_DEPTH|VEC_DEPTH|RED_II|RED_DEPTH|MEM_DEPTH|CALL_CYCLES)\s+(\d+)",
                         line)
            if m:
                out[m.group(1).lower()] = int(m.group(2))
    return out


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


class Machine:
    """One board's kernel configuration."""

    def __init__(self, board: str):
        b = boards()[board]
        self.board = board
        self.ports = int(b["weight_ports"])
        self.port_bytes = int(b["port_bits"]) // 8
        self.clock_hz = float(b["clock_mhz"]) * 1e6
        self.ddr_bps = float(b["ddr_peak_gbps"]) * 1e9
        self.port_bps = self.ports * self.port_bytes * self.clock_hz  # weight-port capacity, bytes/s
        self.max_d, self.max_inter, self.max_vocab = int(b["max_d"]), int(b["max_inter"]), int(b["max_vocab"])
        self.max_layers = int(b["max_layers"])
        self.ddr_bytes = int(b["ddr_bytes"])
        max_rows = max(2 * self.max_inter, self.max_d)
        self.head_chunk = (max_rows // 4) * 4
        c = pipeline_constants()
        self.lanes = c["vec_lanes"]
        self.ii = {"mv": 1, "vec": 1, "red": c["red_ii"], "mem": 1}
        self.depth = {"mv": c["mv_depth"], "vec": c["vec_depth"], "red": c["red_depth"], "mem": c["mem_depth"]}
        self.call_cycles = c["call_cycles"]

    # ------------------------------------------------------------------ trip counts
    def beats(self, k: int, packing: str) -> int:
        return pk.row_bytes(k, packing) // self.port_bytes

    def _nb(self, n: int) -> int:
        return _cdiv(n, self.lanes)

    def trips(self, op: str, d: int, inter: int = 0, vocab: int = 0, packing: str = "base3",
              layers: int = 1) -> Dict[str, Tuple[int, int]]:
        """{class: (iterations, loops)} of one kernel call: op in embed, layer, head, or the whole-token
        ops body (embed + ``layers`` x layer) and token (body + head)."""
        if op in ("body", "token"):
            parts = [self.trips("embed", d, inter, vocab, packing)]
            parts += [self.trips("layer", d, inter, vocab, packing)] * layers
            if op == "token":
                parts.append(self.trips("head", d, inter, vocab, packing))
            return {c: (sum(p[c][0] for p in parts), sum(p[c][1] for p in parts)) for c in CLASSES}
        t = {c: [0, 0] for c in CLASSES}

        def add(c, n):
            t[c][0] += n
            t[c][1] += 1

        fpb = self.port_bytes // 4
        lanes = self.port_bytes * pk.CODES_PER_BYTE[packing]

        def bitlinear_in(k):
            add("vec", self._nb(k))                                # absmax
            add("vec", self._nb(self.beats(k, packing) * lanes))   # quantize (padded row)

        def rows_out(rows, k):
            rpp = _cdiv(rows, self.ports)
            add("mv", rpp * self.beats(k, packing))
            add("vec", self.ports * self._nb(rpp))                 # out = acc * scale, per port

        if op == "embed":
            add("mem", d)
            add("mem", _cdiv(d, fpb))
        elif op == "layer":
            floats = layout.layer_layout(d, inter, packing)["floats"]
            add("mem", _cdiv(_cdiv(floats * 4, self.port_bytes), self.ports))
            add("mem", _cdiv(d, fpb))
            add("mem", _cdiv(d, fpb))
            add("red", self._nb(d))                                # block_rscale
            for _ in range(3):                                     # i, f, g
                bitlinear_in(d)
                rows_out(d, d)
            add("vec", self._nb(d))                                # MLGRU
            add("red", self._nb(d))                                # rms(y_g)
            add("red", self._nb(d))                                # output gate o (+ rms(o))
            bitlinear_in(d)
            rows_out(d, d)                                         # o
            add("vec", self._nb(d))                                # residual
            add("red", self._nb(d))                                # block_rscale (mlp)
            bitlinear_in(d)
            rows_out(2 * inter, d)                                 # gate_up
            add("red", self._nb(inter))                            # SwiGLU (+ rms(z))
            bitlinear_in(inter)
            rows_out(d, inter)                                     # down
            add("vec", self._nb(d))                                # residual
            add("mem", _cdiv(d, fpb))
            add("mem", _cdiv(d, fpb))
        elif op == "head":
            floats = layout.head_layout(d, vocab, packing)["floats"]
            add("mem", _cdiv(_cdiv(floats * 4, self.port_bytes), self.ports))
            add("mem", _cdiv(d, fpb))
            add("red", self._nb(d))
            bitlinear_in(d)
            for row0 in range(0, vocab, self.head_chunk):
                rows = min(self.head_chunk, vocab - row0)
                rows_out(rows, d)
                add("mem", _cdiv(rows, fpb))
        else:
            raise ValueError(f"unknown op {op!r}")
        return {c: (v[0], v[1]) for c, v in t.items()}

    def cycles(self, trips: Dict[str, Tuple[int, int]]) -> Dict[str, int]:
        return {c: n * self.ii[c] + loops * self.depth[c] for c, (n, loops) in trips.items()}

    # ------------------------------------------------------------------ per token
    def token(self, d: int, layers: int, inter: int, vocab: int, packing: str,
              ddr_efficiency: float = DDR_EFFICIENCY, calls: int = 1) -> dict:
        """Modeled time of one decode token (embed + layers + head), see the module docstring.
        ``calls``: kernel calls per token (1: OP_TOKEN; layers + 2: the per-op schedule).

        Keys: stream_s, overhead_s, token_s, stream_fraction (the per-token breakdown); compute_s,
        ddr_s, binds (all cycles at the clock vs all bytes at the DDR peak); cycles, cycles_by_class,
        stream_cycles, overhead (cycle fraction beyond the stream iterations), layer_cycles,
        code_bytes, ddr_bytes, port_s, tok_s (= 1 / token_s), fits.
        """
        tr = {op: self.trips(op, d, inter, vocab, packing) for op in ("embed", "layer", "head")}
        cyc = {op: self.cycles(t) for op, t in tr.items()}
        total = {c: cyc["embed"][c] + layers * cyc["layer"][c] + cyc["head"][c] for c in CLASSES}
        call_cycles = calls * self.call_cycles
        cycles = sum(total.values()) + call_cycles
        stream = tr["embed"]["mv"][0] + layers * tr["layer"]["mv"][0] + tr["head"]["mv"][0]
        layer_blob = layout.layer_layout(d, inter, packing)["bytes"]
        head_blob = layout.head_layout(d, vocab, packing)["bytes"]
        code_bytes = layout.code_bytes_per_token(d, layers, inter, vocab, packing)
        vec_io = 2 * d + 4 * layout.pad4(d) + layers * 4 * 4 * layout.pad4(d) + 4 * layout.pad4(d) + 4 * layout.pad4(vocab)
        ddr_bytes = layers * layer_blob + head_blob + vec_io
        compute_s = cycles / self.clock_hz
        ddr_s = ddr_bytes / self.ddr_bps
        port_s = stream / self.clock_hz
        stream_s = max(port_s, code_bytes / (self.ddr_bps * ddr_efficiency))
        overhead_s = (cycles - stream) / self.clock_hz
        token_s = stream_s + overhead_s
        return {
            "stream_s": stream_s, "overhead_s": overhead_s, "token_s": token_s,
            "stream_fraction": stream_s / token_s, "ddr_efficiency": ddr_efficiency,
            "compute_s": compute_s, "ddr_s": ddr_s, "binds": "DDR" if ddr_s >= compute_s else "compute",
            "cycles": cycles, "cycles_by_class": total, "stream_cycles": stream,
            "calls": calls, "call_cycles": call_cycles,
            "overhead": (cycles - stream) / cycles, "layer_cycles": sum(cyc["layer"].values()),
            "code_bytes": code_bytes, "ddr_bytes": ddr_bytes, "port_s": port_s,
            "tok_s": 1.0 / token_s,
            "fits": d <= self.max_d and inter <= self.max_inter and vocab <= self.max_vocab
            and layers <= self.max_layers and ddr_bytes < self.ddr_bytes,
        }


def table(packings=("2bit", "base3")) -> list:
    rows = []
    for board in boards():
        m = Machine(board)
        for name, (d, L, inter, vocab) in MODELS.items():
            for packing in packings:
                r = m.token(d, L, inter, vocab, packing)
                rows.append(dict(board=board, model=name, packing=packing, **r))
    return rows


def format_table(rows=None) -> str:
    rows = rows if rows is not None else table()
    eff = rows[0]["ddr_efficiency"] if rows else DDR_EFFICIENCY
    out = ["| board | model | packing | Mcycles/token | compute ms | DDR ms (peak) | binds | "
           f"stream ms ({100 * eff:.0f}% DDR) | overhead ms | stream fraction | tok/s | fits |",
           "|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|---|"]
    for r in rows:
        out.append(f"| {r['board']} | {r['model']} | {r['packing']} | {r['cycles'] / 1e6:.3f} | "
                   f"{r['compute_s'] * 1e3:.2f} | {r['ddr_s'] * 1e3:.2f} | {r['binds']} | "
                   f"{r['stream_s'] * 1e3:.2f} | {r['overhead_s'] * 1e3:.2f} | {r['stream_fraction']:.3f} | "
                   f"{r['tok_s']:.1f} | {'yes' if r['fits'] else 'no'} |")
    return "\n".join(out)


if __name__ == "__main__":
    # the figures `mmfree bench --project` prints (kernel model plus the driver time), one code path
    from .perf import projection_table
    print(projection_table())
