"""Emulator decode speed and the driver's own Python time per token (measured on this machine).

    python scripts/bench_emu.py MODEL.safetensors [MODEL2 ...] [--tokens 8] [--json out.json]

Per model: the driver (mmfree.driver.Accelerator) on the emulated overlay (mmfree.emu), greedy decode:
- decode tokens/s of the whole emulator (C-simulated kernel + driver + emulated registers);
- time inside the C-simulated kernel, and the rest (driver + emulated register file) per token;
- the same loop with the kernel stubbed out (AP_START completes at once): Python time per token of
  the driver's register writes, polling and buffer work, plus the emulated register file's own cost;
- the same with registers that cost nothing: the driver's Python alone;
- MMIO writes and reads per token (what a board pays at ~1-2 us per access from Python), and kernel
  calls per token (1 with the weights arena: one OP_TOKEN call; L + 2 with --per-op, the fallback).
Label the numbers "measured here, <CPU>, emulator".
"""
import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

from mmfree import driver, emu, packed as pk


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def bench(path, tokens, board="kv260", arena=True):
    m = pk.load(path, check_codes=False)
    ol = emu.Overlay(board=board)
    t0 = time.perf_counter()
    acc = driver.Accelerator(ol, m, arena=arena)
    load_s = time.perf_counter() - t0
    regs = ol.registers
    logits = acc.prefill([1, 2])
    step_s, kern_s = [], []
    tok = int(np.argmax(logits))
    r0, w0, starts0 = regs.n_reads, regs.n_writes, regs.starts
    for _ in range(tokens):
        k0, t0 = regs.kernel_seconds, time.perf_counter()
        logits = acc.step(tok)
        step_s.append(time.perf_counter() - t0)
        kern_s.append(regs.kernel_seconds - k0)
        tok = int(np.argmax(logits))
    per_tok_w, per_tok_r = (regs.n_writes - w0) / tokens, (regs.n_reads - r0) / tokens
    calls_per_token = (regs.starts - starts0) / tokens
    regs.stub = True
    stub_s = []
    for _ in range(max(300, tokens)):
        t0 = time.perf_counter()
        acc.step(tok)
        stub_s.append(time.perf_counter() - t0)
    regs.stub = False
    # the driver alone: registers that cost nothing (every read says ap_done|ap_idle)
    regs.read = lambda offset=0, length=4: 0x6
    regs.write = lambda offset, value: None
    null_s = []
    for _ in range(max(300, tokens)):
        t0 = time.perf_counter()
        acc.step(tok)
        null_s.append(time.perf_counter() - t0)
    c = m.config
    med, kmed = statistics.median(step_s), statistics.median(kern_s)
    out = {
        "model": os.path.basename(path), "packing": m.packing, "d": c.hidden_size, "layers": c.num_hidden_layers,
        "inter": c.intermediate_size, "vocab": c.vocab_size, "load_s": round(load_s, 3),
        "decode_tokens": tokens, "decode_tokens_per_s": round(1 / med, 3), "step_s_median": med,
        "kernel_s_median": kmed, "outside_kernel_s_median": med - kmed,
        "stubbed_step_s_median": statistics.median(stub_s),
        "driver_only_step_s_median": statistics.median(null_s),
        "mmio_writes_per_token": per_tok_w, "mmio_reads_per_token": per_tok_r,
        "kernel_calls_per_token": calls_per_token, "driver_mode": acc.mode,
    }
    acc.close()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--tokens", type=int, default=8)
    ap.add_argument("--board", default="kv260")
    ap.add_argument("--per-op", action="store_true", help="the per-op schedule (the fallback without the arena)")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    res = {"label": f"measured here, {os.cpu_count()}-core {platform.machine()} CPU ({cpu_name()}), emulator",
           "results": [bench(p, a.tokens, a.board, arena=not a.per_op) for p in a.models]}
    for r in res["results"]:
        print(f"{r['model']}: d={r['d']} L={r['layers']} {r['packing']}: {r['decode_tokens_per_s']:.3g} tok/s "
              f"(step {r['step_s_median'] * 1e3:.2f} ms, kernel {r['kernel_s_median'] * 1e3:.2f} ms, outside "
              f"{r['outside_kernel_s_median'] * 1e3:.3f} ms; stubbed step {r['stubbed_step_s_median'] * 1e3:.3f} ms, driver alone {r['driver_only_step_s_median'] * 1e3:.3f} ms; "
              f"{r['mmio_writes_per_token']:.0f} writes + {r['mmio_reads_per_token']:.0f} reads, "
              f"{r['kernel_calls_per_token']:g} kernel calls per token, {r['driver_mode']})")
    print(res["label"])
    if a.json:
        from mmfree.fileio import write_json
        write_json(a.json, res, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
