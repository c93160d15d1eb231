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
                  measured: Optional[Dict[str, float]] = None, highlight: Optional[Dict] = None) -> str:
    """PNG: tokens/s against packed bytes per token, one bandwidth ceiling per board (modeled).

    ``measured``: optional {label: (bytes_per_token, tokens_per_s)} points to overlay.
    ``highlight``: optional projection (``project``'s dict) drawn as a ringed point with its label.
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
    if highlight:
        hx, hy = highlight["code_bytes_per_token"] / 1e6, highlight["decode_tokens_per_s"]
        ax.plot(hx, hy, "o", ms=14, mfc="none", mec="k", mew=1.5)
        ax.annotate(f"{highlight['board']}, {highlight.get('size', 'this model')}: {hy:.1f} tokens/s",
                    (hx, hy), textcoords="offset points", xytext=(10, 8), fontsize=8)
    from matplotlib.lines import Line2D
    extra = [Line2D([], [], color="0.4", ls=":", lw=1, label=f"ceiling x {ddr_efficiency:.2f} DDR efficiency (assumed)"),
             Line2D([], [], color="0.4", marker="o", ls="none", label="MODELED: released sizes that fit the board")]
    if measured:
        extra.append(Line2D([], [], color="k", marker="^", ls="none", label="measured"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"packed weight bytes per token (MB, {packing})")
    ax.set_ylabel("decode tokens/s")
    ax.set_title("Roofline: decode speed against weight bytes per token (MODELED)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    h, lab = ax.get_legend_handles_labels()
    ax.legend(h + extra, lab + [e.get_label() for e in extra], fontsize=8)
    fig.tight_layout()
    from .fileio import atomic_path
    try:
        with atomic_path(path) as tmp:  # a temporary file, then a rename: never a half-written plot
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
    return path


# ------------------------------------------------------------------------ one way to show the model
def fit_problems(board: str, d: int, layers: int, inter: int, vocab: int, packing: str = "base3") -> list:
    """Why a model shape cannot run on a board's overlay (empty when it fits): the kernel's compiled
    maxima (boards.json max_d, max_inter, max_vocab, max_layers) and the board's DDR size."""
    m = cycles.Machine(board)
    out = []
    for what, v, cap in (("hidden size", d, m.max_d), ("intermediate size", inter, m.max_inter),
                         ("vocabulary", vocab, m.max_vocab), ("layers", layers, m.max_layers)):
        if v > cap:
            out.append(f"{what} {v} > the overlay's maximum {cap}")
    need = m.token(d, layers, inter, vocab, packing)["ddr_bytes"]
    if need >= m.ddr_bytes:
        out.append(f"{need / 2**20:.0f} MiB of weights >= the board's {m.ddr_bytes / 2**20:.0f} MiB of DDR")
    return out


def assumptions(board: str, ddr_efficiency: float, r: Optional[Dict] = None) -> Dict[str, str]:
    """What a projection assumes, as {name: 'value (where it comes from)'}, for printing."""
    m = cycles.Machine(board)
    out = {
        "kernel clock": f"{m.clock_hz / 1e6:.1f} MHz (boards.json clock_mhz, a clock the image's PLL divides into; "
                        "timing not yet closed in Vivado)",
        "weight ports": f"{m.ports} x {8 * m.port_bytes} bit at the kernel clock = "
                        f"{m.port_bps / 1e9:.1f} GB/s (boards.json)",
        "DDR peak": f"{m.ddr_bps / 1e9:.2f} GB/s (boards.json ddr_peak_gbps)",
        "DDR efficiency": f"{ddr_efficiency:.2f} of the peak, assumed"
                          + (f" ({DDR_EFFICIENCY_SOURCE}; another design, on KV260)"
                             if ddr_efficiency == DDR_EFFICIENCY else " (--ddr-efficiency)"),
        "kernel cycles": "mmfree.cycles: loop trip counts x the loops' reachable IIs from the census of the code "
                         "(" + ", ".join(f"{k} {v}" for k, v in m.ii.items()) + ") + pipeline depths and DDR first-beat "
                         "latency of hls/include/mmfree_config.h",
        "census": f"{m.census.get('path')} (sources {m.census.get('sources_sha')}; `make census BOARD={board}`)",
    }
    if r is not None:
        per_call = r.get("driver_s_per_call")
        out["driver time"] = (f"{1e3 * per_call:.3f} ms per kernel call x {r['kernel_calls_per_token']} call(s) "
                              "per token, measured in emulation on this host's CPU (a board's ARM core will differ)"
                              if per_call else "not measured: counted as 0")
    return out


def projection_rows(r: Dict) -> list:
    """(name, value with unit) rows of one projection (``project``)."""
    return [
        ("decode", f"{r['decode_tokens_per_s']:.1f} tokens/s ({1e3 * r['token_s']:.2f} ms/token)"),
        ("DDR ceiling", f"{r['ddr_ceiling_tokens_per_s']:.1f} tokens/s (every weight byte at the DDR peak)"),
        ("weight stream", f"{1e3 * r['stream_s']:.3f} ms/token (bound by {r['stream_bound_by']})"),
        ("kernel work beyond the stream", f"{1e3 * r['compute_beyond_stream_s']:.3f} ms/token "
                                          "(vector passes, pipeline fills, small loads)"),
        ("driver", f"{1e3 * r['driver_s']:.3f} ms/token"),
        ("stream share of the token", f"{100 * r['stream_fraction']:.1f} %"),
        ("packed weights read", f"{r['code_bytes_per_token'] / 1e6:.1f} MB/token"),
    ]


def projection_table(packings=("2bit", "base3"), ddr_efficiency: float = DDR_EFFICIENCY) -> str:
    """Markdown table of ``project`` for every board, released size and packing (what
    ``python -m mmfree.cycles`` prints): the same figures as ``mmfree bench --project``."""
    out = [f"Modeled decode (not measured), DDR efficiency {ddr_efficiency:.2f} (assumed), driver time "
           "measured in emulation on this host; `mmfree bench --project` prints the assumptions.", "",
           "| board | model | packing | kernel Mcycles/token | stream ms | beyond-stream ms | driver ms | "
           "stream fraction | tokens/s | fits |", "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for board in cycles.boards():
        for size, (d, layers, inter, vocab) in SIZES.items():
            for packing in packings:
                problems = fit_problems(board, d, layers, inter, vocab, packing)
                r = project(board, d, layers, inter, vocab, packing, ddr_efficiency=ddr_efficiency)
                tps = "-" if problems else f"{r['decode_tokens_per_s']:.1f}"
                out.append(f"| {board} | {size} | {packing} | {r['kernel_cycles_per_token'] / 1e6:.3f} | "
                           f"{1e3 * r['stream_s']:.2f} | {1e3 * r['compute_beyond_stream_s']:.2f} | "
                           f"{1e3 * r['driver_s']:.3f} | {r['stream_fraction']:.3f} | {tps} | "
                           f"{'yes' if not problems else 'no'} |")
    return "\n".join(out)
