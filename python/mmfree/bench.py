"""``mmfree bench``: measured throughput of a backend, or the modeled projection for a board.

Measured (label "measured here" off a board, "measured on a board" with the pynq backend):
prefill and decode tokens/s (warm-up, repeats, median and spread); for accelerator backends
(emu, pynq) also the time per kernel call by op (TOKEN and BODY: one call per token with the
weights arena; EMBED, LAYER, HEAD in the per-op fallback), the kernel calls per decode token, the
time spent inside the kernel versus in the driver's Python (register writes, polling, buffer work),
per token and per kernel call, and the bytes the kernel streams per token.

Modeled (``--project BOARD``): ``mmfree.perf.project`` for a released size or a packed model's
shape, with a roofline plot.
"""

import json
import sys
import time
from collections import defaultdict
from typing import Dict

import numpy as np

from . import perf


def _stats(xs) -> Dict[str, float]:
    xs = np.asarray(xs, dtype=np.float64)
    return {"median": float(np.median(xs)), "min": float(xs.min()), "max": float(xs.max()), "n": int(xs.size)}


class _CallTimer:
    """Times every kernel call of an Accelerator, and the part of it spent inside the kernel.

    Wraps the accelerator's ``_run`` (one kernel call: register writes, start, poll). The kernel's
    own time is the emulator's counter (``kernel_seconds``: the C-simulated kernel) in emulation,
    and the time in ``MMFreeKernel.wait`` (start to ap_done) on a board; the driver's time is the
    rest.
    """

    def __init__(self, acc):
        self.acc = acc
        self.calls = defaultdict(list)
        self._regs = getattr(acc.ip, "mmio", None)
        self._emulated = hasattr(self._regs, "kernel_seconds")
        self._wait_s = 0.0
        self._orig_run = acc._run
        acc._run = self._run
        if not self._emulated:
            self._orig_wait = acc.ip.wait
            acc.ip.wait = self._wait
        self.reset()

    @property
    def kernel_s(self) -> float:
        return (self._regs.kernel_seconds - self._k0) if self._emulated else self._wait_s

    def _wait(self, *a, **kw):
        t = time.perf_counter()
        try:
            return self._orig_wait(*a, **kw)
        finally:
            self._wait_s += time.perf_counter() - t

    def _run(self, op, what, *a, **kw):
        t = time.perf_counter()
        try:
            return self._orig_run(op, what, *a, **kw)
        finally:
            self.calls[what.split(" (")[0].replace("op ", "")].append(time.perf_counter() - t)

    def reset(self):
        self.calls.clear()
        self._wait_s = 0.0
        self._k0 = self._regs.kernel_seconds if self._emulated else 0.0

    def close(self):
        self.acc._run = self._orig_run
        if not self._emulated:
            self.acc.ip.wait = self._orig_wait


def streamed_bytes_per_token(packed) -> int:
    """Bytes the kernel reads per decode token: every code byte, the parameter blocks, one embedding row."""
    c = packed.config
    params = sum(int(packed.tensor(n).nbytes) for n in packed.names
                 if not n.endswith(".codes") and n not in ("embeddings", "lower_bounds"))
    return packed.nbytes(".codes") + params + 4 * c.hidden_size * c.num_hidden_layers + 2 * c.hidden_size


def bench_backend(backend, prompt_len: int = 16, new_tokens: int = 32, warmup: int = 1, repeats: int = 3,
                  seed: int = 0, progress: bool = False) -> Dict:
    """Measure one backend (``mmfree.backends``): greedy decode of ``new_tokens`` after a random prompt."""
    rng = np.random.default_rng(seed)
    prompt = rng.integers(3, backend.vocab_size, size=prompt_len).tolist()
    acc = getattr(backend, "acc", None)
    timer = _CallTimer(acc) if acc is not None else None
    prefill, decode, kernel, driver, ncalls = [], [], [], [], []
    per_call = defaultdict(list)
    try:
        for r in range(warmup + repeats):
            backend.reset()
            if timer:
                timer.reset()
            t0 = time.perf_counter()
            logits = backend.prefill(prompt)
            t1 = time.perf_counter()
            k1 = timer.kernel_s if timer else 0.0
            calls_before = {k: len(v) for k, v in timer.calls.items()} if timer else {}
            for _ in range(new_tokens):
                logits = backend.step(int(np.argmax(logits)))
            t2 = time.perf_counter()
            if progress:
                print(f"  run {r + 1}/{warmup + repeats}: decode {new_tokens / (t2 - t1):.2f} tok/s", file=sys.stderr)
            if r < warmup:
                continue
            prefill.append(prompt_len / (t1 - t0))
            decode.append(new_tokens / (t2 - t1))
            if timer:
                k = timer.kernel_s - k1
                kernel.append(k / new_tokens)
                driver.append((t2 - t1 - k) / new_tokens)
                # every call of this repeat (prefill's BODY calls too) in the per-op table; the decode
                # calls per token from the decode part only
                for op, ts in timer.calls.items():
                    per_call[op].extend(ts)
                ncalls.append(sum(len(ts) - calls_before.get(op, 0) for op, ts in timer.calls.items()) / new_tokens)
    finally:
        if timer:
            timer.close()
    out = {
        "backend": backend.name, "prompt_tokens": prompt_len, "new_tokens": new_tokens,
        "warmup": warmup, "repeats": repeats,
        "prefill_tokens_per_s": _stats(prefill), "decode_tokens_per_s": _stats(decode),
    }
    if timer:
        out["kernel_s_per_token"] = _stats(kernel)
        out["driver_s_per_token"] = _stats(driver)
        # kernel calls per decode token, as counted (1: one TOKEN call; L + 2 in the per-op fallback)
        n_calls = float(np.median(ncalls)) if ncalls else float(backend.acc.n_layers + 2)
        out["driver_mode"] = getattr(backend.acc, "mode", "per-op")
        out["kernel_calls_per_token"] = n_calls
        out["driver_s_per_call"] = float(np.median(driver)) / n_calls
        out["kernel_call_s"] = {op: _stats(ts) for op, ts in per_call.items() if ts}
        out["layer_s"] = out["kernel_call_s"].get("LAYER")
        out["bytes_streamed_per_token"] = streamed_bytes_per_token(backend.acc.packed)
        clock = getattr(backend.acc, "clock_mhz", None)
        if clock is not None:  # the PL clock the image set (pynq.Clocks; the emulator's stand-in) and the target
            out["pl_clock_mhz"] = clock
            out["pl_clock_target_mhz"] = getattr(backend.acc, "clock_target_mhz", None)
    return out


# ------------------------------------------------------------------------------------ CLI
def add_arguments(p):
    p.add_argument("--model", help="packed model (default: the bundled model)")
    p.add_argument("--backend", choices=("emu", "pynq", "golden", "torch"),
                   help="backend to measure (default: pynq on a board, emu elsewhere)")
    p.add_argument("--board", help="board of the emulated or real overlay (default: detected, else kv260)")
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--project", metavar="BOARD", help="modeled projection for BOARD instead of a measurement")
    p.add_argument("--size", choices=sorted(perf.SIZES), help="released model size for --project")
    p.add_argument("--packing", choices=("2bit", "base3"), default=None, help="packing for --project (default base3)")
    p.add_argument("--ddr-efficiency", type=float, default=perf.DDR_EFFICIENCY)
    p.add_argument("--plot", metavar="PNG", help="also write the roofline plot (--project)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")


def _print_table(rows):
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


def run_cli(args) -> int:
    from .errors import ConfigError
    if args.project:
        from . import cycles
        if args.project not in cycles.boards():
            raise ConfigError(f"unknown board {args.project!r}, expected one of {sorted(cycles.boards())}")
        packing = args.packing or "base3"
        if args.size:
            r = perf.project_size(args.project, args.size, packing, ddr_efficiency=args.ddr_efficiency)
        elif args.model:
            from . import packed as pk
            m = pk.load(args.model)
            c = m.config
            packing = args.packing or m.packing
            r = perf.project(args.project, c.hidden_size, c.num_hidden_layers, c.intermediate_size, c.vocab_size,
                             packing, ddr_efficiency=args.ddr_efficiency)
            r["model"] = args.model
        else:
            raise ConfigError("--project needs --size (370M, 1.3B, 2.7B) or --model")
        if args.plot:
            r["plot"] = perf.roofline_plot(args.plot, packing, args.ddr_efficiency)
        if args.json:
            print(json.dumps(r))
        else:
            print(f"modeled on {args.project} ({r.get('size', r.get('model'))}, {packing}); every figure is modeled")
            _print_table([
                ("decode tokens/s", f"{r['decode_tokens_per_s']:.1f}"),
                ("DDR ceiling tokens/s", f"{r['ddr_ceiling_tokens_per_s']:.1f} (peak {r['ddr_peak_gbps']:.2f} GB/s)"),
                ("PL clock MHz", f"{r['clock_mhz']:g} ({r['clock_source']})"),
                ("DDR efficiency", f"{r['ddr_efficiency']:.2f} ({r['ddr_efficiency_source']})"),
                ("weight stream ms", f"{1e3 * r['stream_s']:.3f} (bound by {r['stream_bound_by']})"),
                ("compute beyond stream ms", f"{1e3 * r['compute_beyond_stream_s']:.3f}"),
                ("driver ms", f"{1e3 * r['driver_s']:.3f} ({r['driver_source']})"),
                ("stream fraction", f"{r['stream_fraction']:.3f}"),
                ("packed bytes/token", f"{r['code_bytes_per_token'] / 1e6:.1f} MB"),
                ("PL clock", f"{r['clock_mhz']:.1f} MHz (boards.json)"),
                ("loop IIs", ", ".join(f"{k} {v}" for k, v in r["loop_ii"].items())
                 + f" (census {r['census']['path']}, sources {r['census']['sources_sha']})"),
            ])
        return 0

    from .backends import default_backend, make_backend
    from .generate import default_model
    name = args.backend or default_backend()
    model = args.model or default_model()
    backend = make_backend(name, model, board=args.board)
    try:
        r = bench_backend(backend, args.prompt_len, args.new_tokens, args.warmup, args.repeats,
                          progress=not args.json)
    finally:
        backend.close()
    r["model"] = model
    r["label"] = "measured on a board" if name == "pynq" else "measured here (this host's CPU)"
    if name == "pynq" and r.get("pl_clock_mhz"):  # the model at the clock the board really runs, for comparison
        acc = getattr(backend, "acc", None)
        if acc is not None:
            c = acc.config
            r["modeled_at_pl_clock"] = perf.project(acc.board, c.hidden_size, c.num_hidden_layers,
                                                    c.intermediate_size, c.vocab_size, acc.packed.packing,
                                                    clock_mhz=r["pl_clock_mhz"])["decode_tokens_per_s"]
    if args.json:
        print(json.dumps(r))
        return 0
    print(f"{r['label']}: backend {name}, model {model}")
    d, p = r["decode_tokens_per_s"], r["prefill_tokens_per_s"]
    rows = [("prefill tokens/s", f"{p['median']:.2f} (min {p['min']:.2f}, max {p['max']:.2f}, n={p['n']})"),
            ("decode tokens/s", f"{d['median']:.2f} (min {d['min']:.2f}, max {d['max']:.2f}, n={d['n']})")]
    if "kernel_s_per_token" in r:
        rows += [("kernel ms/token", f"{1e3 * r['kernel_s_per_token']['median']:.3f}"),
                 ("driver ms/token", f"{1e3 * r['driver_s_per_token']['median']:.3f} "
                                     f"({1e6 * r['driver_s_per_call']:.1f} us per kernel call)"),
                 ("kernel calls/token", f"{r['kernel_calls_per_token']:g} ({r['driver_mode']})"),
                 ("bytes streamed/token", f"{r['bytes_streamed_per_token'] / 1e6:.3f} MB")]
        for op, s in r["kernel_call_s"].items():
            rows.append((f"{op} call ms", f"{1e3 * s['median']:.3f} (n={s['n']})"))
    if r.get("pl_clock_mhz") is not None:
        where = "pynq.Clocks.fclk0_mhz" if name == "pynq" else "emulated image"
        rows.append(("PL clock MHz", f"{r['pl_clock_mhz']:.3f} ({where}; build target {r['pl_clock_target_mhz']:.3f})"))
    if "modeled_at_pl_clock" in r:
        rows.append(("modeled decode tok/s", f"{r['modeled_at_pl_clock']:.1f} (modeled at the PL clock above)"))
    _print_table(rows)
    return 0
