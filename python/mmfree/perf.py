"""Performance model: modeled decode time per token on a board (every figure here is *modeled*).

    token time = weight stream + compute beyond the stream + driver overhead

- weight stream: the packed weights of one token (all layers + lm_head, plus the small parameter
  blocks) at the board's DDR bandwidth times a DDR efficiency, or at the kernel's port capacity
  (ports x port width x clock) if that is lower (``mmfree.cycles``: one bus word per cycle per port);
- compute beyond the stream: the kernel's cycles that do not overlap the stream (vector unit
  passes, pipeline fill, parameter/x/h loads, embedding row, logits write), from the cycle model;
- driver overhead: the Python time per kernel call on the host side (register writes, polling),
  as measured in emulation (``results/driver_overhead_emu.json``, or a value given by the caller),
  times the kernel calls per decode token: 1 (one OP_TOKEN call per token, register map v3; the
  per-op fallback without the weights arena makes layers + 2, ``calls_per_token=None`` models it).

DDR efficiency default: 0.85, the share of the KV260 DDR bandwidth-limited decode speed reached
by Li et al. (DATE'25, arXiv 2502.10659), the best-documented KV260 figure; Hummingbird
(ICCAD'25, arXiv 2507.03308) states 93-94 %. Sources in docs/benchmarks.md.
"""

import json
import os
from typing import Dict, Optional

from . import cycles
from . import packed as pk
from .layout import code_bytes_per_token  # noqa: F401  (re-exported for the notebooks)

DDR_EFFICIENCY = 0.85
DDR_EFFICIENCY_SOURCE = "Li et al., DATE'25 (arXiv 2502.10659): 85 % of the KV260 bandwidth-limited decode speed"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DRIVER_RESULTS = os.path.join(ROOT, "results", "driver_overhead_emu.json")
SIZES = cycles.MODELS  # name -> (d, layers, I, vocab), the released configs


def driver_seconds_per_call(path: str = DRIVER_RESULTS) -> Optional[float]:
    """The driver's own Python time per kernel call, measured in emulation (None if not measured)."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            return float(json.load(f)["driver_s_per_call"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def project(board: str, d: int, layers: int, inter: int, vocab: int, packing: str = "base3",
            ddr_efficiency: float = DDR_EFFICIENCY, driver_s_per_call: Optional[float] = None,
            calls_per_token: Optional[int] = 1, clock_mhz: Optional[float] = None) -> Dict:
    """Modeled decode figures for one model shape on one board. ``calls_per_token``: kernel calls per
    decode token, 1 with OP_TOKEN (default); None for the per-op schedule (layers + 2). ``clock_mhz``: the
    PL clock the board really runs (the driver's ``Accelerator.clock_mhz``, read from pynq.Clocks after the
    overlay loaded) instead of the build's target (boards.json clock_mhz)."""
    if packing not in pk.PACKINGS:
        raise ValueError(f"unknown packing {packing!r}")
    if not 0 < ddr_efficiency <= 1:
        raise ValueError(f"ddr_efficiency must be in (0, 1], got {ddr_efficiency}")
    calls = layers + 2 if calls_per_token is None else int(calls_per_token)
    m = cycles.Machine(board)
    clock_source = "boards.json clock_mhz (the build's target)"
    if clock_mhz:
        m.clock_hz = float(clock_mhz) * 1e6
        m.port_bps = m.ports * m.port_bytes * m.clock_hz
        clock_source = "the PL clock the board runs (pynq.Clocks)"
    tok = m.token(d, layers, inter, vocab, packing, ddr_efficiency=ddr_efficiency, calls=calls)  # stream + kernel
    code_bytes = tok["code_bytes"]
    stream_s, compute_extra_s = tok["stream_s"], tok["overhead_s"]
    if driver_s_per_call is None:
        driver_s_per_call = driver_seconds_per_call()
    driver_s = (driver_s_per_call or 0.0) * calls
    token_s = stream_s + compute_extra_s + driver_s
    return {
        "label": "modeled", "board": board, "d": d, "layers": layers, "intermediate_size": inter,
        "vocab_size": vocab, "packing": packing,
        "code_bytes_per_token": code_bytes, "ddr_bytes_per_token": tok["ddr_bytes"],
        "clock_mhz": m.clock_hz / 1e6, "clock_source": clock_source,
        "ddr_peak_gbps": m.ddr_bps / 1e9, "ddr_efficiency": ddr_efficiency,
        "ddr_efficiency_source": DDR_EFFICIENCY_SOURCE,
        "port_capacity_gbps": m.ports * m.port_bytes * m.clock_hz / 1e9,
        "ddr_ceiling_tokens_per_s": m.ddr_bps / code_bytes,
        "stream_s": stream_s, "stream_bound_by": "ports" if tok["port_s"] > tok["ddr_s"] / ddr_efficiency else "DDR",
        "stream_fraction_kernel_only": tok["stream_fraction"],
        "compute_beyond_stream_s": compute_extra_s,
        "driver_s": driver_s, "driver_s_per_call": driver_s_per_call, "kernel_calls_per_token": calls,
        "driver_source": "measured in emulation" if driver_s_per_call else "not measured (0)",
        "token_s": token_s, "decode_tokens_per_s": 1.0 / token_s,
        "stream_fraction": stream_s / token_s,
        "kernel_cycles_per_token": tok["cycles"], "fits_board": tok["fits"],
        "clock_mhz": tok["clock_mhz"], "loop_ii": tok["ii"], "census": tok["census"],
    }


def project_size(board: str, size: str, packing: str = "base3", **kw) -> Dict:
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}, expected one of {list(SIZES)}")
    d, layers, inter, vocab = SIZES[size]
    r = project(board, d, layers, inter, vocab, packing, **kw)
    r["size"] = size
    return r


def roofline_plot(path: str, packing: str = "base3", ddr_efficiency: float = DDR_EFFICIENCY,
                  measured: Optional[Dict[str, float]] = None) -> str:
    """PNG: tokens/s against packed bytes per token, one bandwidth ceiling per board (modeled).

    ``measured``: optional {label: (bytes_per_token, tokens_per_s)} points to overlay.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7.5, 5))
    xs = np.logspace(6.5, 9.2, 50)
    colors = {}
    for board in cycles.boards():
        m = cycles.Machine(board)
        line, = ax.plot(xs / 1e6, m.ddr_bps / xs, label=f"{board}: {m.ddr_bps / 1e9:.1f} GB/s peak ceiling")
        colors[board] = line.get_color()
        ax.plot(xs / 1e6, m.ddr_bps * ddr_efficiency / xs, ":", color=line.get_color(), lw=1)
        for size in SIZES:
            r = project_size(board, size, packing, ddr_efficiency=ddr_efficiency)
            if not r["fits_board"]:
                continue
            ax.plot(r["code_bytes_per_token"] / 1e6, r["decode_tokens_per_s"], "o", color=line.get_color())
    for size in SIZES:
        d, layers, inter, vocab = SIZES[size]
        b = code_bytes_per_token(d, layers, inter, vocab, packing)
        ax.axvline(b / 1e6, color="0.85", lw=0.8, zorder=0)
        ax.text(b / 1e6, 0.03, size, rotation=90, va="bottom", ha="right", fontsize=8, color="0.4",
                transform=ax.get_xaxis_transform())
    for label, (b, tps) in (measured or {}).items():
        ax.plot(b / 1e6, tps, "k^")
        ax.annotate(label, (b / 1e6, tps), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"packed weight bytes per token (MB, {packing})")
    ax.set_ylabel("decode tokens/s")
    ax.set_title(f"Roofline, modeled: dots = mmfree kernel model at {ddr_efficiency:.0%} DDR efficiency (dotted)",
                 fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    from .fileio import atomic_path
    try:
        with atomic_path(path) as tmp:  # a temporary file, then a rename: never a half-written plot
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
    return path
