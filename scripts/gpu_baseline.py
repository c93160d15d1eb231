#!/usr/bin/env python3
"""GPU baseline: batch-1 decode tokens/s and joules/token of the torch reference (mmfree.model).

Random weights in the released shapes (speed and energy do not depend on the values):

    370M: d=1024, L=24, I=2816, V=32000        1.3B: d=2048, L=24, I=5632, V=32000

For each shape x weight dtype x mode: build on the device, measure idle power with the model
loaded, warm up, then ``--repeats`` timed runs of greedy decode (``model.step`` in a loop,
argmax fed back on the device, one synchronize at the end of each run), each about
``--seconds`` long, recorded with mmfree.power's NVML sensor (energy counter when the GPU has
one). Medians over the repeats go to ``--out`` (JSON) with the exact command line.

Modes:
  ref     mmfree.model's BitLinear inference path as it stands in this checkout (until commit
          f3a1d2e: re-quantize the latent weight on every call, as the released PyTorch code
          does; since: ternary codes cached per weight version, integer product). The JSON
          records the git commit and a hash of model.py so results say which one ran.
  cached  the ternary weight ``codes * alpha`` precomputed once, stored in the weight dtype,
          F.linear in that dtype (activations still int8-fake-quantized per token): a fairer
          "GPU runs the same ternary model" baseline (no packed-ternary kernel, though).

CPU check:  python scripts/gpu_baseline.py --tiny --device cpu --out /tmp/b.json
H200 run:   python scripts/gpu_baseline.py --out results/gpu_baseline_h200.json
"""

import argparse
import datetime as _dt
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from mmfree import power  # noqa: E402
from mmfree.config import HGRNBitConfig  # noqa: E402
from mmfree.model import BitLinear, HGRNBit, activation_quant, weight_quant  # noqa: E402

SHAPES = {
    "370M": dict(hidden_size=1024, num_hidden_layers=24, intermediate_size=2816, vocab_size=32000),
    "1.3B": dict(hidden_size=2048, num_hidden_layers=24, intermediate_size=5632, vocab_size=32000),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, intermediate_size=192, vocab_size=512),
}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="JSON results file")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--configs", default="370M,1.3B", help=f"comma list of {sorted(SHAPES)} or 'custom'")
    ap.add_argument("--tiny", action="store_true", help="only the tiny shape (CPU smoke test)")
    ap.add_argument("--d", type=int, help="custom shape: hidden size (adds config 'custom')")
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--inter", type=int, help="custom intermediate size (default: the released rule)")
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--dtypes", default="bf16,fp32", help="weight dtypes: fp32, fp16, bf16")
    ap.add_argument("--modes", default="ref", help="comma list of ref, cached")
    ap.add_argument("--cached-dtypes", default=None,
                    help="dtypes to run in 'cached' mode (default: all of --dtypes)")
    ap.add_argument("--warmup", type=int, default=8, help="warm-up tokens")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0, help="target length of one timed run")
    ap.add_argument("--min-tokens", type=int, default=8)
    ap.add_argument("--idle-s", type=float, default=2.0, help="idle seconds before each case")
    ap.add_argument("--interval", type=float, default=0.05, help="power sampling interval (s)")
    ap.add_argument("--no-energy", action="store_true", help="skip power (always on CPU)")
    ap.add_argument("--gpu-index", type=int, default=None, help="NVML index (default: the torch device's)")
    ap.add_argument("--plot-dir", default=None, help="write one power-trace PNG per case here")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


# ------------------------------------------------------------------------------- cached mode

def _cached_forward(self, x):
    return F.linear(activation_quant(self.norm(x)).to(self._wq.dtype), self._wq)


def make_cached(model: HGRNBit, dtype):
    """Precompute every BitLinear's ``codes * alpha`` once (in ``dtype``); the latent weight stays."""
    for m in model.modules():
        if isinstance(m, BitLinear):
            with torch.no_grad():
                m._wq = weight_quant(m.weight.float()).to(dtype)
            m.forward = _cached_forward.__get__(m, BitLinear)
    return model


# ----------------------------------------------------------------------------------- run

def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def decode(model, state, tok, n):
    for _ in range(n):
        logits, state = model.step(tok, state)
        tok = logits.argmax(-1)
    return state, tok


def provenance():
    """git commit, dirty flag and sha256 of mmfree/model.py: which reference actually ran."""
    import hashlib
    import mmfree.model as mm

    info = {"model_py_sha256": hashlib.sha256(open(mm.__file__, "rb").read()).hexdigest(),
            "bitlinear_caches_codes": hasattr(BitLinear, "ternary")}
    root = os.path.join(HERE, "..")
    for key, cmd in (("git_commit", ["git", "rev-parse", "HEAD"]),
                     ("git_dirty", ["git", "status", "--porcelain", "--", "python/mmfree", "scripts"])):
        try:
            p = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=10)
            info[key] = p.stdout.strip() if p.returncode == 0 else None
        except Exception:
            info[key] = None
    return info


def gpu_state(index):
    try:
        p = subprocess.run(["nvidia-smi", "-i", str(index), "--format=csv,noheader",
                            "--query-gpu=name,driver_version,utilization.gpu,memory.used,power.draw,"
                            "power.limit,clocks.sm,clocks.mem,temperature.gpu"],
                           capture_output=True, text=True, timeout=10)
        return p.stdout.strip() or p.stderr.strip()
    except Exception as e:  # no nvidia-smi: not fatal
        return f"nvidia-smi unavailable: {e}"


def run_case(name, shape, dtype_name, mode, args, device, sensor):
    torch.manual_seed(args.seed)
    cfg = HGRNBitConfig(**shape)
    t0 = time.perf_counter()
    with torch.device(device):
        model = HGRNBit(cfg)
    model = model.to(DTYPES[dtype_name]).eval()
    if mode == "cached":
        make_cached(model, DTYPES[dtype_name])
    n_params = sum(p.numel() for p in model.parameters())
    sync(device)
    build_s = time.perf_counter() - t0
    case = dict(config=name, shape=shape, params=n_params, dtype=dtype_name, mode=mode,
                build_s=round(build_s, 3))

    idle = None
    if sensor is not None:
        time.sleep(0.5)
        idle = power.measure_idle(sensor, args.idle_s, args.interval)
        case["idle_watts"] = idle.avg_watts
        case["idle_energy_source"] = idle.energy_source

    gen = torch.Generator(device="cpu").manual_seed(args.seed + 1)
    tok = torch.randint(0, cfg.vocab_size, (1,), generator=gen).to(device)
    state = model.init_state(1)
    with torch.inference_mode():
        state, tok = decode(model, state, tok, args.warmup)
        sync(device)
        t0 = time.perf_counter()  # calibrate the run length on a few warm tokens
        state, tok = decode(model, state, tok, 4)
        sync(device)
        per_tok = (time.perf_counter() - t0) / 4
        n = max(args.min_tokens, int(args.seconds / max(per_tok, 1e-6)))
        case["tokens_per_repeat"] = n
        runs = []
        for r in range(args.repeats):
            box = {}

            def work():
                box["out"] = decode(model, state, tok, n)
                sync(device)
                return n

            if sensor is not None:
                res = power.measure_energy(work, sensor, idle_s=0, idle_watts=idle.avg_watts,
                                           interval_s=args.interval, tokens=n)
                runs.append(dict(seconds=res.duration_s, tokens_per_s=res.tokens_per_s,
                                 j_per_token_net=res.joules_per_token,
                                 j_per_token_gross=res.joules_per_token_gross, avg_watts=res.avg_watts,
                                 joules_gross=res.joules_gross, joules_trapezoid=res.joules_trapezoid,
                                 energy_source=res.energy_source, samples=res.samples))
                if args.plot_dir and r == args.repeats - 1:
                    os.makedirs(args.plot_dir, exist_ok=True)
                    fn = f"trace_{name}_{dtype_name}_{mode}.png".replace("/", "_")
                    power.plot_trace(res, os.path.join(args.plot_dir, fn),
                                     title=f"{name} {dtype_name} {mode}: " + res.summary())
            else:
                t1 = time.perf_counter()
                work()
                dt = time.perf_counter() - t1
                runs.append(dict(seconds=dt, tokens_per_s=n / dt))
    case["repeats"] = runs
    med = lambda k: statistics.median(r[k] for r in runs)  # noqa: E731
    case["tokens_per_s"] = med("tokens_per_s")
    case["ms_per_token"] = 1000.0 / case["tokens_per_s"]
    if sensor is not None:
        for k in ("j_per_token_net", "j_per_token_gross", "avg_watts"):
            case[k] = med(k)
    del model, state
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return case


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_baseline: --device cuda but torch sees no GPU")
    configs = ["tiny"] if args.tiny else [c.strip() for c in args.configs.split(",") if c.strip()]
    shapes = dict(SHAPES)
    if args.d:
        shapes["custom"] = dict(hidden_size=args.d, num_hidden_layers=args.layers, vocab_size=args.vocab,
                                **({"intermediate_size": args.inter} if args.inter else {}))
        if "custom" not in configs:
            configs = ["custom"] if args.configs == "370M,1.3B" else configs + ["custom"]
    for c in configs:
        if c not in shapes:
            sys.exit(f"gpu_baseline: unknown config {c!r}; one of {sorted(shapes)}")
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    cached_dtypes = dtypes if args.cached_dtypes is None else [d.strip() for d in args.cached_dtypes.split(",")]
    for d in dtypes + cached_dtypes:
        if d not in DTYPES:
            sys.exit(f"gpu_baseline: unknown dtype {d!r}; one of {sorted(DTYPES)}")
    for m in modes:
        if m not in ("ref", "cached"):
            sys.exit(f"gpu_baseline: unknown mode {m!r}")

    sensor = None
    gpu_name = None
    gpu_index = None
    if device.type == "cuda":
        gpu_index = device.index if device.index is not None else torch.cuda.current_device()
        gpu_name = torch.cuda.get_device_name(gpu_index)
        if not args.no_energy:
            sensor = power.NvmlSensor(args.gpu_index if args.gpu_index is not None else gpu_index)

    out = dict(
        what="batch-1 greedy decode of mmfree.model.HGRNBit (torch reference), random weights",
        label="measured here (GPU)" if device.type == "cuda" else "measured here (CPU)",
        command=shlex.join([sys.executable] + sys.argv) if argv is None else shlex.join(["gpu_baseline.py"] + list(argv)),
        date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        host=platform.node(), python=platform.python_version(), torch=torch.__version__,
        cuda=torch.version.cuda, device=str(device), gpu=gpu_name,
        gpu_state_before=gpu_state(gpu_index) if gpu_index is not None else None,
        sensor=(sensor.description if sensor else None),
        code=provenance(),
        settings=dict(warmup=args.warmup, repeats=args.repeats, seconds=args.seconds, idle_s=args.idle_s,
                      interval_s=args.interval, seed=args.seed),
        notes=[
            "energy: NVML board power of the GPU only (not host CPU/DRAM); J/token net = (run energy - idle W x run time) / tokens",
            "idle = the GPU with the model loaded and nothing running, measured before each case's warm-up",
            "mode ref: mmfree.model's BitLinear inference path as checked out (see code.bitlinear_caches_codes)",
            "mode cached: ternary codes*alpha precomputed once in the weight dtype, F.linear in that dtype",
            "figures are medians over the repeats; no CUDA graphs, no packed-ternary kernel",
        ],
        results=[],
    )
    cases = [(c, d, m) for c in configs for m in modes for d in (dtypes if m == "ref" else cached_dtypes)]
    for c, d, m in cases:
        case = run_case(c, shapes[c], d, m, args, device, sensor)
        out["results"].append(case)
        msg = f"{c:5s} {d:4s} {m:6s} {case['tokens_per_s']:9.2f} tok/s {case['ms_per_token']:8.3f} ms/tok"
        if sensor is not None:
            msg += (f"  {case['j_per_token_net']:.4f} J/tok net  {case['j_per_token_gross']:.4f} gross  "
                    f"{case['avg_watts']:.1f} W avg  {case['idle_watts']:.1f} W idle")
        print(msg, flush=True)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        from mmfree.fileio import write_json  # after each case (atomically), so a timeout keeps what finished
        write_json(args.out, out, indent=2)
    if gpu_index is not None:
        out["gpu_state_after"] = gpu_state(gpu_index)
        from mmfree.fileio import write_json
        write_json(args.out, out, indent=2)
    if sensor is not None:
        sensor.close()
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
