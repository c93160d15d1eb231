"""Cycle model of mmfree_kernel (hls/): cycles per token from loop trip counts and the census (model, not vendor-tool).

Every pipelined loop of the kernel belongs to one class; a loop of N iterations costs ``N * II + DEPTH``
cycles, loops run one after another:

    mv   ternary matvec, flattened (padded rows / ports) x beats per row, the scale applied at the row end
    vec  quantize pass, FLOAT_LANES elements per iteration
    red  reductions: norm_scan (block_rscale + absmax), rms_factor (FLOAT_LANES), the sigmoid pass
         (MLGRU, output gate, SwiGLU: SIGMOID_LANES)
    mem  DDR bursts of params (one port), x, h, logits, the embedding row, one beat per iteration

The II of each class is the slowest loop's *reachable* II in the census of the code (mmfree.census:
bank ports, ALLOCATION limits, accesses per bundle), never an assumed 1; if the census finds the
weight reads not burst-eligible, each beat waits for DDR (MEM_DEPTH / outstanding requests cycles).
DEPTH: pipeline fill per loop (hls/include/mmfree_config.h), plus the DDR first-beat latency
(MMFREE_MEM_DEPTH) for every loop that starts a burst. A fixed cost per kernel call
(MMFREE_CALL_CYCLES) is paid once per token with OP_TOKEN.

``trips()`` gives the exact iteration and loop counts the C-simulation counters report
(tests/test_cycles.py checks them against hls/ through csim.py); the board's ports, port width, lanes,
clock and DDR rate come from python/mmfree/data/boards.json, the pipeline constants from
hls/include/mmfree_config.h (the one place for each).

Per token (``Machine.token``) the kernel is sequential: vector passes, parameter loads and pipeline
fills run between the weight streams, never under them. So a token takes

    stream_s   = the weight stream: max(matvec iterations x II / clock,
                                        code bytes / (DDR peak x ddr_efficiency))
    overhead_s = every other cycle (vec, red, mem classes, fills, first beats, per-call cost) / clock
    token_s    = stream_s + overhead_s,    stream_fraction = stream_s / token_s

and, for the "which binds" question, compute_s = all cycles / clock (DDR infinitely fast) against
ddr_s = all bytes of a token at the DDR peak: "DDR" binds when ddr_s >= compute_s.

    python -m mmfree.cycles            # the table: boards x models x packings (mmfree.perf.projection_table,
                                       # the same figures as `mmfree bench --project`; runs the census if needed)
"""

import os
import re
from typing import Dict, Optional, Tuple

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
    """MMFREE_VEC_LANES, MV_DEPTH, VEC_DEPTH, RED_DEPTH, MEM_DEPTH, CALL_CYCLES from the HLS header."""
    out = {}
    with open(path, "r", encoding="utf-8") as f:
        for line in f:
            m = re.match(r"#define\s+MMFREE_(VEC_LANES|MV_DEPTH|VEC_DEPTH|RED_DEPTH|MEM_DEPTH|CALL_CYCLES)\s+(\d+)", line)
            if m:
                out[m.group(1).lower()] = int(m.group(2))
    return out


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


class Machine:
    """One board's kernel configuration; ``census`` (mmfree.census output) gives the loops' reachable IIs
    and the weight ports' burst verdicts and FIFO depths (run or loaded on first need when not given)."""

    def __init__(self, board: str, census: Optional[dict] = None):
        b = boards()[board]
        self.board = board
        self.ports = int(b["weight_ports"])
        self.port_bytes = int(b["port_bits"]) // 8
        self.float_lanes, self.sigmoid_lanes = int(b["float_lanes"]), int(b["sigmoid_lanes"])
        self.clock_hz = float(b["clock_mhz"]) * 1e6
        self.ddr_bps = float(b["ddr_peak_gbps"]) * 1e9
        self.max_d, self.max_inter, self.max_vocab = int(b["max_d"]), int(b["max_inter"]), int(b["max_vocab"])
        self.max_layers = int(b["max_layers"])
        self.ddr_bytes = int(b["ddr_bytes"])
        self.head_rows = layout.HEAD_ROWS
        c = pipeline_constants()
        self.lanes = c["vec_lanes"]
        self.depth = {"mv": c["mv_depth"] + c["mem_depth"], "vec": c["vec_depth"], "red": c["red_depth"],
                      "mem": c["mem_depth"]}
        self.mem_depth = c["mem_depth"]
        self.call_cycles = c["call_cycles"]
        self._census = census

    @property
    def port_bps(self) -> float:
        """Weight-port capacity in bytes/s at the clock (which the driver may set to the image's real one)."""
        return self.ports * self.port_bytes * self.clock_hz

    # ------------------------------------------------------------------ census
    @property
    def census(self) -> dict:
        if self._census is None:
            from . import census as _census
            self._census = _census.load_or_run(self.board)
        return self._census

    @property
    def ii(self) -> Dict[str, int]:
        """Reachable II per class from the census; the weight stream waits for DDR per beat when its reads are
        not burst-eligible."""
        from . import census as _census
        ii = {c: 1 for c in CLASSES}
        ii.update(_census.class_ii(self.census))
        if not _census.weight_stream_bursts(self.census):
            outstanding = min(b["read_outstanding"] for n, b in self.census["bundles"].items() if n.startswith("gmem_w"))
            ii["mv"] = max(ii["mv"], _cdiv(self.mem_depth, outstanding))
        return ii

    # ------------------------------------------------------------------ trip counts
    def beats(self, k: int, packing: str) -> int:
        return pk.row_bytes(k, packing) // self.port_bytes

    def trips(self, op: str, d: int, inter: int = 0, vocab: int = 0, packing: str = "base3",
              layers: int = 1) -> Dict[str, Tuple[int, int]]:
        """{class: (iterations, loops)} of one kernel call: op in embed, layer, head, or the whole-token
        ops body (embed + ``layers`` x layer, x kept on chip) and token (body + head)."""
        if op not in ("embed", "layer", "head", "body", "token"):
            raise ValueError(f"unknown op {op!r}")
        t = {c: [0, 0] for c in CLASSES}

        def add(c, n):
            t[c][0] += n
            t[c][1] += 1

        fpb = self.port_bytes // 4
        fl, sl = self.float_lanes, self.sigmoid_lanes
        lanes = self.port_bytes * pk.CODES_PER_BYTE[packing]

        def product(rows, k):
            add("vec", _cdiv(self.beats(k, packing) * lanes, fl))          # quantize (padded row)
            add("mv", layout.pad_rows(rows) // self.ports * self.beats(k, packing))

        def embed():
            add("mem", d)
            add("mem", _cdiv(d, fpb))

        def layer(x_in, x_out):
            floats = layout.layer_layout(d, inter, packing)["floats"]
            add("mem", _cdiv(floats * 4, self.port_bytes))                   # params, one port
            if x_in:
                add("mem", _cdiv(d, fpb))
            add("mem", _cdiv(d, fpb))                                        # h
            add("red", _cdiv(d, fl))                                         # norm_scan (attn)
            for _ in range(3):                                               # i, f, g
                product(d, d)
            add("red", _cdiv(d, sl))                                         # MLGRU
            add("red", _cdiv(d, fl))                                         # rms(y_g)
            add("red", _cdiv(d, sl))                                         # output gate
            product(d, d)                                                    # o (+ residual at the row end)
            add("red", _cdiv(d, fl))                                         # norm_scan (mlp)
            product(2 * inter, d)                                            # gate_up
            add("red", _cdiv(inter, sl))                                     # SwiGLU
            product(d, inter)                                                # down (+ residual)
            if x_out:
                add("mem", _cdiv(d, fpb))
            add("mem", _cdiv(d, fpb))                                        # h

        def head(x_in):
            floats = layout.head_layout(d, vocab, packing)["floats"]
            add("mem", _cdiv(floats * 4, self.port_bytes))
            if x_in:
                add("mem", _cdiv(d, fpb))
            add("red", _cdiv(d, fl))                                         # norm_scan
            add("vec", _cdiv(self.beats(d, packing) * lanes, fl))           # quantize
            for row0 in range(0, vocab, self.head_rows):
                rows = min(self.head_rows, vocab - row0)
                add("mv", layout.pad_rows(rows) // self.ports * self.beats(d, packing))
                add("mem", _cdiv(rows, fpb))

        if op == "embed":
            embed()
        elif op == "layer":
            layer(True, True)
        elif op == "head":
            head(True)
        else:
            embed()
            for li in range(layers):
                layer(False, li == layers - 1)
            if op == "token":
                head(False)
        return {c: (v[0], v[1]) for c, v in t.items()}

    def cycles(self, trips: Dict[str, Tuple[int, int]]) -> Dict[str, int]:
        ii = self.ii
        return {c: n * ii[c] + loops * self.depth[c] for c, (n, loops) in trips.items()}

    # ------------------------------------------------------------------ per token
    def token(self, d: int, layers: int, inter: int, vocab: int, packing: str,
              ddr_efficiency: float = DDR_EFFICIENCY, calls: int = 1) -> dict:
        """Modeled time of one decode token (OP_TOKEN: embed + layers + head), see the module docstring.
        ``calls``: kernel calls per token (1: OP_TOKEN; layers + 2: the per-op schedule, which also reads and
        writes x around every layer).

        Keys: stream_s, overhead_s, token_s, stream_fraction (the per-token breakdown); compute_s,
        ddr_s, binds (all cycles at the clock vs all bytes at the DDR peak); cycles, cycles_by_class,
        stream_cycles, overhead (cycle fraction beyond the stream iterations), layer_cycles,
        code_bytes, ddr_bytes, port_s, tok_s (= 1 / token_s), ceiling_tok_s (DDR peak / code bytes),
        fits, ii, clock_mhz, census (its path and source hash).
        """
        if calls == 1:
            tr = self.trips("token", d, inter, vocab, packing, layers=layers)
        else:
            parts = [self.trips("embed", d, inter, vocab, packing)] + \
                [self.trips("layer", d, inter, vocab, packing)] * layers + [self.trips("head", d, inter, vocab, packing)]
            tr = {c: (sum(p[c][0] for p in parts), sum(p[c][1] for p in parts)) for c in CLASSES}
        total = self.cycles(tr)
        ii = self.ii
        call_cycles = calls * self.call_cycles
        cycles = sum(total.values()) + call_cycles
        stream = tr["mv"][0] * ii["mv"]
        layer_blob = layout.layer_layout(d, inter, packing)["bytes"]
        head_blob = layout.head_layout(d, vocab, packing)["bytes"]
        code_bytes = layout.code_bytes_per_token(d, layers, inter, vocab, packing)
        vec_io = 2 * d + 4 * layout.pad4(d) + layers * 2 * 4 * layout.pad4(d) + 4 * layout.pad4(d) + 4 * layout.pad4(vocab)
        ddr_bytes = layers * layer_blob + head_blob + vec_io
        compute_s = cycles / self.clock_hz
        ddr_s = ddr_bytes / self.ddr_bps
        port_s = stream / self.clock_hz
        stream_s = max(port_s, code_bytes / (self.ddr_bps * ddr_efficiency))
        overhead_s = (cycles - stream) / self.clock_hz
        token_s = stream_s + overhead_s
        layer_tr = self.trips("layer", d, inter, vocab, packing)
        cen = self.census
        return {
            "stream_s": stream_s, "overhead_s": overhead_s, "token_s": token_s,
            "stream_fraction": stream_s / token_s, "ddr_efficiency": ddr_efficiency,
            "compute_s": compute_s, "ddr_s": ddr_s, "binds": "DDR" if ddr_s >= compute_s else "compute",
            "cycles": cycles, "cycles_by_class": total, "stream_cycles": stream,
            "calls": calls, "call_cycles": call_cycles,
            "overhead": (cycles - stream) / cycles, "layer_cycles": sum(self.cycles(layer_tr).values()),
            "code_bytes": code_bytes, "ddr_bytes": ddr_bytes, "port_s": port_s,
            "tok_s": 1.0 / token_s, "ceiling_tok_s": self.ddr_bps / code_bytes,
            "fits": d <= self.max_d and inter <= self.max_inter and vocab <= self.max_vocab
            and layers <= self.max_layers and ddr_bytes < self.ddr_bytes,
            "ii": ii, "clock_mhz": self.clock_hz / 1e6,
            "census": {"path": cen.get("path"), "sources_sha": cen.get("sources_sha")},
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
    out = ["| board | clock MHz | model | packing | Mcycles/token | compute ms | DDR ms (peak) | binds | "
           f"stream ms ({100 * eff:.0f}% DDR) | overhead ms | stream fraction | tok/s | % of DDR ceiling | fits |",
           "|---|---:|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        out.append(f"| {r['board']} | {r['clock_mhz']:.1f} | {r['model']} | {r['packing']} | {r['cycles'] / 1e6:.3f} | "
                   f"{r['compute_s'] * 1e3:.2f} | {r['ddr_s'] * 1e3:.2f} | {r['binds']} | "
                   f"{r['stream_s'] * 1e3:.2f} | {r['overhead_s'] * 1e3:.2f} | {r['stream_fraction']:.3f} | "
                   f"{r['tok_s']:.1f} | {100 * r['tok_s'] / r['ceiling_tok_s']:.1f} | {'yes' if r['fits'] else 'no'} |")
    return "\n".join(out)


if __name__ == "__main__":
    # the figures `mmfree bench --project` prints (kernel model plus the driver time), one code path
    from .perf import projection_table
    print(projection_table())
