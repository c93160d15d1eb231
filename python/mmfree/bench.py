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

import argparse
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
                kind = "warm-up" if r < warmup else "timed"
                print(f"  run {r + 1}/{warmup + repeats} ({kind}): decode {new_tokens / (t2 - t1):.2f} tokens/s",
                      file=sys.stderr)
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
CLI_DESCRIPTION = """\
Two modes.

Measured (default): run a backend on a model and time it: warm-up runs, then timed runs, each a
random prompt of --prompt-len tokens followed by --max-new-tokens greedy tokens (no stop at
end-of-sequence). Medians with min/max. Labelled "measured here (this host's CPU)" for emu, golden
and torch -- the emulator's speed is this CPU's, not the FPGA's -- and "measured on a board" for pynq.

Modeled (--project): no model run, no weights needed: the kernel's cycle model with the board's
clock, DDR bandwidth and an assumed DDR efficiency (all printed), for a released size (--size) or a
packed model's shape (--model). Nothing in this mode has been measured on a board."""

CLI_EPILOG = """\
examples:
  mmfree bench                                            # emulator on this host, bundled model
  mmfree bench --project --board kv260 --size 1.3B        # modeled KV260 figures for MMfreeLM-1.3B
  mmfree bench --project --board kv260 --model mmfree-370m.safetensors --json
"""


def add_arguments(p):
    from . import cliargs as ca
    from .backends import BACKENDS
    from .cli import add_model
    add_model(p, positional_alias=False)
    p.add_argument("--backend", choices=BACKENDS, help="backend to measure; default: pynq on a board, emu elsewhere")
    p.add_argument("--board", type=ca.board_name,
                   help="board: of the overlay measured (default: detected, else kv260), or the one modeled "
                        "with --project (default kv260)")
    m = p.add_argument_group("measured mode")
    m.add_argument("--prompt-len", type=ca.int_range(1, ca.MAX_PROMPT_TOKENS), default=16, metavar="TOKENS",
                   help="tokens in the random prompt of each run")
    m.add_argument("-n", "--max-new-tokens", type=ca.int_range(1, ca.MAX_NEW_TOKENS), default=32, metavar="N",
                   help="greedy tokens decoded per run (always N: no stop at end-of-sequence)")
    m.add_argument("--new-tokens", dest="max_new_tokens", type=ca.int_range(1, ca.MAX_NEW_TOKENS),
                   help=argparse.SUPPRESS)  # deprecated spelling
    m.add_argument("--warmup", type=ca.int_range(0, 1000), default=1, metavar="RUNS",
                   help="untimed runs first (caches, page faults)")
    m.add_argument("--repeats", type=ca.int_range(1, 1000), default=3, metavar="RUNS", help="timed runs")
    m.add_argument("--seed", type=ca.int_range(0, ca.MAX_SEED), default=0, metavar="S",
                   help="seed of the random prompt")
    j = p.add_argument_group("modeled mode")
    j.add_argument("--project", nargs="?", const="", default=None, metavar="BOARD",
                   help="model the board given by --board instead of measuring (the form --project BOARD "
                        "also works)")
    j.add_argument("--size", choices=list(perf.SIZES), help="released model size to model (or give --model)")
    j.add_argument("--packing", choices=("2bit", "base3"), default=None,
                   help="packing to model; default: the model file's, else base3")
    j.add_argument("--ddr-efficiency", type=ca.float_range(0, 1, lo_open=True), default=perf.DDR_EFFICIENCY,
                   metavar="FRACTION", help="assumed fraction of the DDR peak the weight stream reaches (0-1]")
    j.add_argument("--plot", metavar="PNG", help="also write the roofline plot of every board and size (modeled)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-run progress lines on stderr")


def _print_table(rows, indent=""):
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{indent}{k:<{width}}  {v}")


def _run_project(args) -> int:
    from . import boards
    from .errors import ConfigError
    if args.backend:
        raise ConfigError("--backend is for measuring; --project models a board and runs no backend")
    board = args.board
    if args.project:
        try:
            pb = boards.normalize(args.project)
        except Exception:
            pb = args.project
        if pb not in boards.names():
            raise ConfigError(f"unknown board {args.project!r}; one of {', '.join(boards.names())}")
        if board and board != pb:
            raise ConfigError(f"two boards given: --project {args.project} and --board {args.board}")
        board = pb
    board = board or "kv260"
    packing = args.packing or "base3"
    if args.size and args.model:
        raise ConfigError("give --size or --model, not both")
    if args.size:
        what = args.size
        d, layers, inter, vocab = perf.SIZES[args.size]
    elif args.model:
        from . import packed as pk
        m = pk.load(args.model)
        c = m.config
        packing = args.packing or m.packing
        what = args.model
        d, layers, inter, vocab = c.hidden_size, c.num_hidden_layers, c.intermediate_size, c.vocab_size
    else:
        raise ConfigError("--project needs --size (" + ", ".join(perf.SIZES) + ") or --model")
    problems = perf.fit_problems(board, d, layers, inter, vocab, packing)
    if problems:
        raise ConfigError(f"{what} does not fit {board}: " + "; ".join(problems) + " (nothing to model)")
    r = perf.project(board, d, layers, inter, vocab, packing, ddr_efficiency=args.ddr_efficiency)
    r["model"] = what
    if args.size:
        r["size"] = args.size
    r["assumptions"] = perf.assumptions(board, args.ddr_efficiency, r)
    if args.plot:
        r["plot"] = perf.roofline_plot(args.plot, packing, args.ddr_efficiency, highlight=r)
    if args.json:
        print(json.dumps(r))
        return 0
    from .cliargs import safe
    print(f"MODELED, not measured (no mmfree bitstream has run on a board yet): {board}, {safe(what)} "
          f"(d={d}, {layers} layers, I={inter}, vocab {vocab}), {packing} packing")
    print("assumptions:")
    _print_table([(k, v) for k, v in r["assumptions"].items()], "  ")
    print("modeled figures:")
    _print_table(perf.projection_rows(r), "  ")
    print("(docs/benchmarks.md explains the model; `python -m mmfree.cycles` prints every board and size)")
    if args.plot:
        print(f"roofline plot (modeled): {safe(r['plot'])}")
    return 0


def run_cli(args) -> int:
    if args.project is not None:
        return _run_project(args)

    from .backends import default_backend, make_backend
    from .cli import resolve_model
    from .cliargs import safe
    from .errors import ConfigError
    if args.size or args.packing or args.plot or args.ddr_efficiency != perf.DDR_EFFICIENCY:
        raise ConfigError("--size, --packing, --ddr-efficiency and --plot belong to the modeled mode: add --project")
    name = args.backend or default_backend()
    model = resolve_model(args)
    progress = not (args.json or args.quiet)
    if progress:
        print(f"mmfree bench: backend {name}, {args.warmup} warm-up + {args.repeats} timed runs, each a "
              f"{args.prompt_len}-token random prompt then {args.max_new_tokens} greedy tokens", file=sys.stderr)
    backend = make_backend(name, model, board=args.board)
    try:
        r = bench_backend(backend, args.prompt_len, args.max_new_tokens, args.warmup, args.repeats,
                          seed=args.seed, progress=progress)
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
    note = "" if name == "pynq" else "; emulator speed, not FPGA speed" if name == "emu" else ""
    print(f"{r['label']}{note}: backend {name}, model {safe(model)}")
    d, p = r["decode_tokens_per_s"], r["prefill_tokens_per_s"]
    rows = [("prefill", f"{p['median']:.2f} tokens/s (min {p['min']:.2f}, max {p['max']:.2f}, n={p['n']} runs)"),
            ("decode", f"{d['median']:.2f} tokens/s (min {d['min']:.2f}, max {d['max']:.2f}, n={d['n']} runs)")]
    if "kernel_s_per_token" in r:
        rows += [("kernel time", f"{1e3 * r['kernel_s_per_token']['median']:.3f} ms/token"),
                 ("driver time", f"{1e3 * r['driver_s_per_token']['median']:.3f} ms/token "
                                 f"({1e6 * r['driver_s_per_call']:.1f} us per kernel call)"),
                 ("kernel calls", f"{r['kernel_calls_per_token']:g} per token ({r['driver_mode']} mode)"),
                 ("bytes streamed", f"{r['bytes_streamed_per_token'] / 1e6:.3f} MB/token")]
        for op, s in r["kernel_call_s"].items():
            rows.append((f"{op} kernel call", f"{1e3 * s['median']:.3f} ms (median of {s['n']} calls)"))
    if r.get("pl_clock_mhz") is not None:
        where = "pynq.Clocks.fclk0_mhz" if name == "pynq" else "emulated image"
        rows.append(("PL clock", f"{r['pl_clock_mhz']:.3f} MHz ({where}; build target {r['pl_clock_target_mhz']:.3f} MHz)"))
    if "modeled_at_pl_clock" in r:
        rows.append(("modeled decode", f"{r['modeled_at_pl_clock']:.1f} tokens/s (modeled at the PL clock above)"))
    _print_table(rows)
    return 0
