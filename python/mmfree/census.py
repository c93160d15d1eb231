"""Census of the HLS kernel: operators, memory ports and bursts, from the code itself (model, not csynth).

Vitis HLS does not run here, so this module stands in for csynth's loop and resource reports:

1. It reads the kernel's pragmas (hls/include/*.h, hls/mmfree_kernel/mmfree_kernel.cpp): PIPELINE II
   of every loop (paired with the MMFREE_ITER() marker right under it), ARRAY_PARTITION /
   ARRAY_RESHAPE / BIND_STORAGE of every watched array, ALLOCATION limits, m_axi INTERFACE bundles,
   burst lengths and outstanding requests. The pragmas are the one declaration: Vitis reads the same
   lines, so the census cannot drift from them.
2. It builds the kernel with g++ and -DMMFREE_CENSUS (hls/census/): the vector unit's scalar, the
   on-chip arrays' elements, the ternary lanes' sums and the m_axi arguments become counting types,
   and every op of the kernel runs on a small odd shape, both packings. Each pipelined loop instance
   (loop site x chain of call sites: every call site is its own module unless an ALLOCATION pragma
   shares the function) reports the most operators one iteration issues, the most accesses one
   iteration makes to one bank of each array, and for every m_axi bundle whether every iteration
   accessed it exactly once at the next address.
3. It decides, per loop: the reachable II (declared II, raised by bank ports, ALLOCATION limits and
   several accesses per bundle per iteration) and, per m_axi access, the burst verdict of UG1399's
   preconditions (unconditional, one access per bundle per iteration, monotonic and contiguous);
   then prices operators (OP_COSTS, per device family, sources below), arrays (BRAM36 / URAM /
   LUTRAM / registers from size, width, banks and BIND_STORAGE) and m_axi FIFOs (outstanding x burst
   x width).

What the census cannot see, and says so in its output: loop-carried latency (a float recurrence
shorter than its adder's latency), timing closure, csynth's own sharing heuristics, the block design
around the kernel (SmartConnect, interrupt controller: priced from fixed figures in mmfree.boards).

    python -m mmfree.census --board kv260      (make census BOARD=kv260): tables + build/census/kv260.json
"""

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
HLS = os.path.join(ROOT, "hls")
BUILD = os.path.join(ROOT, "build", "census")
SHAPE = (72, 200, 101, 2)  # d, inter, vocab, layers: off every lane and port count, two layers for BODY/TOKEN

# Operator costs per instance: (LUT, FF, DSP), single precision, as Vitis HLS binds them by default
# (fadd/fsub: fulldsp, fmul: maxdsp, fdiv/fsqrt: fabric, conversions and compares: no DSP).
# Source: AMD, Floating-Point Operator v7.1 LogiCORE IP Product Guide (PG060) and its "Performance
# and Resource Utilization" tables (https://www.xilinx.com/htmldocs/ip_docs/pru_files/floating-point.html),
# single-precision rows of each family, rounded up; the binding styles are those named in Vitis HLS
# csynth reports (fmul_32ns_32ns_32_4_max_dsp, fadd_32ns_32ns_32_5_full_dsp, fdiv_..._no_dsp).
# Integer adders: one LUT and one FF per bit (carry chain, registered); a ternary lane: the
# conditional negate-or-zero of an int8 in front of its adder, 9 LUT. fneg is a sign flip (wires).
OP_COSTS = {
    "zynq_ultrascale_plus": {
        "fadd": (230, 230, 2), "fsub": (230, 230, 2), "fmul": (80, 150, 3), "fdiv": (800, 1050, 0),
        "fsqrt": (500, 700, 0), "fcmp": (70, 40, 0), "sitofp": (230, 340, 0), "fptosi": (130, 150, 0),
        "fneg": (0, 0, 0), "lane": (9, 0, 0),
    },
    "zynq7000": {
        "fadd": (240, 330, 2), "fsub": (240, 330, 2), "fmul": (130, 150, 3), "fdiv": (800, 1400, 0),
        "fsqrt": (520, 800, 0), "fcmp": (70, 70, 0), "sitofp": (240, 350, 0), "fptosi": (150, 200, 0),
        "fneg": (0, 0, 0), "lane": (9, 0, 0),
    },
}
OP_FAMILY_ALIASES = {"zynq_ultrascale_plus": "zynq_ultrascale_plus", "zynq": "zynq7000", "zynq7000": "zynq7000",
                     "zynq-7000": "zynq7000"}
LOOP_MODULE = (150, 200)  # LUT, FF of one pipelined-loop module's control (FSM, counters, enables): estimate
# m_axi adapter per bundle (read-only, read-write): LUT, FF, typical of Vitis HLS reports (estimate; its FIFOs
# are priced from the pragmas' outstanding x burst x width)
MAXI_ADAPTER = {"ro": (1300, 2000), "rw": (2200, 3400)}
LUTRAM_MAX_BITS = 1024    # "auto" storage: banks this small go to LUTRAM (RAM64X1D: 2 LUT per 64 x 1)
FLOAT_OPS = ("fadd", "fsub", "fmul", "fdiv", "fsqrt", "fcmp", "sitofp", "fptosi")
HLS_DEFAULT_BURST, HLS_DEFAULT_OUTSTANDING = 16, 16  # Vitis HLS m_axi defaults (UG1399 INTERFACE m_axi)


class CensusError(RuntimeError):
    pass


# ------------------------------------------------------------------------------------------------
# 1. the pragmas

def source_files(hls_dir: str = HLS) -> List[str]:
    inc = os.path.join(hls_dir, "include")
    files = [os.path.join(inc, f) for f in sorted(os.listdir(inc)) if f.endswith(".h")]
    files.append(os.path.join(hls_dir, "mmfree_kernel", "mmfree_kernel.cpp"))
    return files


def defines(paths: List[str]) -> Dict[str, object]:
    """#defines of the given headers (board header, config) whose value is a number or a bare word, so that
    pragmas may name them (factor=MMFREE_X_BANKS, impl=MMFREE_BIG_RAM)."""
    out: Dict[str, object] = {}
    for p in paths:
        if not os.path.exists(p):
            continue
        for line in open(p, encoding="utf-8"):
            m = re.match(r"\s*#define\s+(\w+)\s+\(?\s*(-?\d+)[uUlL]*\s*\)?\s*(/\*.*)?$", line)
            if m:
                out[m.group(1)] = int(m.group(2))
                continue
            m = re.match(r"\s*#define\s+(\w+)\s+([A-Za-z_]\w*)\s*(/\*.*)?$", line)
            if m:
                out[m.group(1)] = m.group(2)
    return out


def _word(tok: str, defs) -> str:
    """A pragma option that is a word: itself, or the word a #define names."""
    v = defs.get(tok, tok)
    return str(v).lower()


def _value(tok: str, defs) -> int:
    tok = tok.strip()
    if re.fullmatch(r"-?\d+", tok):
        return int(tok)
    if isinstance(defs.get(tok), int):
        return defs[tok]
    raise CensusError(f"pragma value {tok!r} is neither a number nor a #define the census knows")


def _opts(text: str) -> Dict[str, str]:
    out = {}
    for t in text.split():
        if "=" in t:
            k, v = t.split("=", 1)
            out[k.lower()] = v
        else:
            out[t.lower()] = ""
    return out


def parse_pragmas(paths: List[str], defs: Dict[str, int]) -> dict:
    """Every HLS pragma the census uses, with file and line."""
    arrays, storage, allocs, loops, iface, shared, inlined = {}, {}, [], {}, {}, set(), set()
    for path in paths:
        base = os.path.basename(path)
        lines = open(path, encoding="utf-8").read().split("\n")
        for i, line in enumerate(lines):
            m = re.match(r"\s*#pragma\s+HLS\s+(\w+)\s*(.*)$", line)
            if m:
                kind, o = m.group(1).upper(), _opts(m.group(2))
                if kind in ("ARRAY_PARTITION", "ARRAY_RESHAPE"):
                    var = o.get("variable")
                    typ = o.get("type") or next((t for t in ("cyclic", "block", "complete") if t in o), "complete")
                    fac = _value(o["factor"], defs) if "factor" in o else 0
                    dim = _value(o.get("dim", "1"), defs)
                    arrays[var] = {"type": typ, "factor": fac, "dim": dim, "reshape": kind == "ARRAY_RESHAPE",
                                   "where": f"{base}:{i + 1}"}
                elif kind == "BIND_STORAGE":
                    storage[o.get("variable")] = {"type": _word(o.get("type", "ram_2p"), defs),
                                                  "impl": _word(o.get("impl", "auto"), defs), "where": f"{base}:{i + 1}"}
                elif kind == "ALLOCATION":
                    limit = _value(o.get("limit", "1"), defs)
                    if "function" in o:
                        shared.add(o["instances"])
                    else:
                        allocs.append({"op": o.get("instances"), "limit": limit, "file": base, "line": i + 1})
                elif kind == "INTERFACE" and "m_axi" in o:
                    iface[o["port"]] = {
                        "bundle": o.get("bundle", "gmem"),
                        "depth": _value(o["depth"], defs) if "depth" in o else None,
                        "read_burst": _value(o.get("max_read_burst_length", str(HLS_DEFAULT_BURST)), defs),
                        "write_burst": _value(o.get("max_write_burst_length", str(HLS_DEFAULT_BURST)), defs),
                        "read_outstanding": _value(o.get("num_read_outstanding", str(HLS_DEFAULT_OUTSTANDING)), defs),
                        "write_outstanding": _value(o.get("num_write_outstanding", str(HLS_DEFAULT_OUTSTANDING)), defs),
                    }
            fm = re.search(r"MMFREE_FUNC\(\"(\w+)\"\)", line)
            if fm and any(re.match(r"\s*#pragma\s+HLS\s+INLINE\s*$", lines[j]) for j in range(max(0, i - 3), i + 3)
                          if j < len(lines)):
                inlined.add(fm.group(1))
            if re.match(r"\s*MMFREE_ITER\(\);", line):
                ii, cls = None, None
                for j in range(i - 1, max(-1, i - 4), -1):
                    pm = re.match(r"\s*#pragma\s+HLS\s+PIPELINE\b(.*)$", lines[j])
                    if pm:
                        o = _opts(pm.group(1))
                        ii = _value(o.get("ii", "1"), defs)
                        break
                if ii is None:
                    raise CensusError(f"{base}:{i + 1}: MMFREE_ITER() without a PIPELINE pragma right above it")
                for j in range(i - 1, max(-1, i - 40), -1):
                    cm = re.search(r"MMFREE_COUNT\(MMFREE_CYC_(\w+)", lines[j])
                    if cm:
                        cls = cm.group(1).lower()
                        break
                func = None
                for j in range(i - 1, -1, -1):
                    fm = re.search(r"MMFREE_FUNC\(\"(\w+)\"\)", lines[j])
                    if fm:
                        func = fm.group(1)
                        break
                loops[f"{base}:{i + 1}"] = {"declared_ii": ii, "class": cls, "function": func}
    for a in allocs:  # an ALLOCATION right under a loop's MMFREE_ITER() limits that loop
        for site, lp in loops.items():
            f, ln = site.rsplit(":", 1)
            if f == a["file"] and 0 < a["line"] - int(ln) <= 3:
                lp.setdefault("alloc", {})[a["op"]] = a["limit"]
    return {"arrays": arrays, "storage": storage, "loops": loops, "interfaces": iface, "shared": sorted(shared),
            "inlined": sorted(inlined)}


def spec_header(pragmas: dict) -> str:
    """census_spec.h: banks of every partitioned array and the bundle of every m_axi argument."""
    rows = []
    for name, a in sorted(pragmas["arrays"].items()):
        st = pragmas["storage"].get(name, {}).get("type", "ram_2p")
        ports = 1 if st in ("ram_1p", "rom_1p") else 2
        typ = "none" if (a["reshape"] and a["type"] == "complete") else a["type"]
        rows.append('    {"%s", "%s", %d, %d, %d},' % (name, typ, a["factor"], a["dim"], ports))
    for name, st in sorted(pragmas["storage"].items()):
        if name not in pragmas["arrays"]:
            ports = 1 if st["type"] in ("ram_1p", "rom_1p") else 2
            rows.append('    {"%s", "none", 1, 1, %d},' % (name, ports))
    if not rows:
        rows.append('    {"", "none", 1, 1, 2},')
    out = ["/* generated by python/mmfree/census.py from the kernel's pragmas: do not edit */",
           '#include "census_types.h"', "static const census::ArraySpec CENSUS_ARRAY_SPECS[] = {"] + rows + ["};"]
    for port, i in sorted(pragmas["interfaces"].items()):
        out.append('static const char *const CENSUS_BUNDLE_%s = "%s";' % (port, i["bundle"]))
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------------
# 2. build and run

def _prerequisites(board: str) -> Dict[str, str]:
    """The board header and the ap_types headers the C-simulation build makes (make -C hls prereq)."""
    py = os.path.join(ROOT, ".venv", "bin", "python")
    cmd = ["make", "-s", "-C", HLS, "prereq", f"BOARD={board}"] + ([f"PY={py}"] if os.path.exists(py) else [])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise CensusError(f"census: `{' '.join(cmd)}` failed:\n{r.stdout}{r.stderr}")
    return {"board_h": os.path.join(ROOT, "build", "csim", board, "mmfree_board.h"),
            "ap_types": os.path.join(ROOT, "build", "ap_types")}


def build(board: str, hls_dir: str = HLS, out_dir: Optional[str] = None, tokens: int = 1) -> dict:
    """Compile the census binary of `board` from the sources in hls_dir (``tokens``: activation vectors per
    weight word, MMFREE_TOKENS; 1 in every real build); returns paths and the pragmas."""
    pre = _prerequisites(board)
    out_dir = out_dir or os.path.join(BUILD, board if tokens == 1 else f"{board}-t{tokens}")
    os.makedirs(out_dir, exist_ok=True)
    srcs = source_files(hls_dir)
    defs = defines([pre["board_h"], os.path.join(hls_dir, "include", "mmfree_config.h"),
                    os.path.join(hls_dir, "include", "mmfree_regs.h")])
    pragmas = parse_pragmas(srcs, defs)
    spec = spec_header(pragmas)
    with open(os.path.join(out_dir, "census_spec.h"), "w", encoding="utf-8") as f:
        f.write(spec)
    cdir = os.path.join(hls_dir, "census")
    inputs = srcs + [os.path.join(cdir, f) for f in sorted(os.listdir(cdir))] + [pre["board_h"]]
    h = hashlib.sha256(spec.encode() + str(tokens).encode())
    for p in inputs:
        h.update(open(p, "rb").read())
    digest = h.hexdigest()[:16]
    exe = os.path.join(out_dir, "census_main")
    stamp = exe + ".sha"
    if not (os.path.exists(exe) and os.path.exists(stamp) and open(stamp).read() == digest):
        cxx = os.environ.get("CXX", "g++")
        cmd = [cxx, "-std=c++14", "-O1", "-fno-inline", "-DMMFREE_CENSUS", f"-DMMFREE_TOKENS={tokens}", "-w",
               "-ffp-contract=off",
               "-isystem", pre["ap_types"], "-I", out_dir, "-I", os.path.dirname(pre["board_h"]),
               "-I", os.path.join(hls_dir, "include"), "-I", os.path.join(hls_dir, "mmfree_kernel"), "-I", cdir,
               "-o", exe, os.path.join(hls_dir, "mmfree_kernel", "mmfree_kernel.cpp"),
               os.path.join(cdir, "census_main.cpp")]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise CensusError("census build failed:\n" + " ".join(cmd) + "\n" + r.stderr[-4000:])
        with open(stamp, "w") as f:
            f.write(digest)
    return {"exe": exe, "pragmas": pragmas, "digest": digest, "defines": defs}


def run(exe: str, shape=SHAPE) -> dict:
    r = subprocess.run([exe] + [str(v) for v in shape], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise CensusError(f"census run failed ({r.returncode}): {r.stderr[-2000:]}")
    return json.loads(r.stdout)


# ------------------------------------------------------------------------------------------------
# 3. decide and price

def _bram36_for(depth: int, width: int) -> int:
    best = None
    for d, w in ((512, 72), (1024, 36), (2048, 18), (4096, 9), (8192, 4), (16384, 2), (32768, 1)):
        n = -(-depth // d) * -(-width // w)
        best = n if best is None else min(best, n)
    return best


def _uram_for(depth: int, width: int) -> int:
    return -(-depth // 4096) * -(-width // 72)


def _collapse(path: str, shared, inlined=()) -> str:
    """Module instance of a call chain, as Vitis HLS builds it: a function called from several places in one
    parent is one instance (its calls are sequential), unless it is inlined (#pragma HLS INLINE: a copy per
    call site); a function named in an ALLOCATION function pragma is one instance for the whole kernel."""
    parts = []
    for p in path.split("/"):
        name = p.split("@")[0]
        if name in shared:
            parts = [name + "@*"]
        elif name in inlined:
            parts.append(p)
        else:
            parts.append(name)
    return "/".join(parts)


def _op_family(op: str) -> str:
    if op.startswith("lane."):
        return "lane"
    return op


def _price_ops(ops: Dict[str, int], costs) -> Dict[str, int]:
    lut = ff = dsp = 0
    for op, n in ops.items():
        m = re.match(r"add(\d+)", op)
        if m:
            w = int(m.group(1))
            lut += n * w
            ff += n * w
            continue
        c = costs.get(_op_family(op))
        if c is None:
            raise CensusError(f"no cost for operator {op!r}")
        lut += n * c[0]
        ff += n * c[1]
        dsp += n * c[2]
    return {"lut": lut, "ff": ff, "dsp": dsp}


def analyse(raw: dict, pragmas: dict, board: dict, board_name: str) -> dict:
    fam = OP_FAMILY_ALIASES.get(board.get("family", ""), None)
    if fam is None:
        raise CensusError(f"board {board_name}: no operator costs for family {board.get('family')!r}")
    costs = OP_COSTS[fam]
    shared, inlined = set(pragmas["shared"]), set(pragmas.get("inlined", ()))
    arrays = {a["name"]: a for a in raw["arrays"]}

    def ports_of(name):
        """Ports per bank of a watched array; None for registers (complete partition of every element)."""
        a = pragmas["arrays"].get(name)
        d1 = arrays[name]["dims"][1]
        if a and not a["reshape"] and a["type"] == "complete" and (a["dim"] == 0 or (d1 == 1 and a["dim"] == 1)):
            return None
        st = pragmas["storage"].get(name, {}).get("type", "ram_2p")
        return 1 if st in ("ram_1p", "rom_1p") else 2

    # loop instances (collapsed where shared), max over the merged raw records
    inst: Dict[str, dict] = {}
    for lp in raw["loops"]:
        key = _collapse(lp["path"], shared, inlined) + "|" + lp["site"]
        cur = inst.setdefault(key, {"site": lp["site"], "path": _collapse(lp["path"], shared, inlined), "iters": 0,
                                    "activations": 0, "ops": {}, "bank_max": {}, "reads": {}, "writes": {}})
        cur["iters"] += lp["iters"]
        cur["activations"] += lp["activations"]
        for k in ("ops", "bank_max"):
            for n, v in lp[k].items():
                cur[k][n] = max(cur[k].get(n, 0), v)
        for k in ("reads", "writes"):
            for b, st in lp[k].items():
                t = cur[k].setdefault(b, {"accesses": 0, "iters_with": 0, "max_per_iter": 0, "noncontig": 0,
                                          "iters": 0})
                t["accesses"] += st["accesses"]
                t["iters_with"] += st["iters_with"]
                t["noncontig"] += st["noncontig"]
                t["max_per_iter"] = max(t["max_per_iter"], st["max_per_iter"])
                t["iters"] += lp["iters"]

    loops, maxi = [], []
    total = {"lut": 0, "ff": 0, "dsp": 0}
    ops_total: Dict[str, int] = {}
    for key in sorted(inst):
        lp = inst[key]
        spec = pragmas["loops"].get(lp["site"])
        if spec is None:
            raise CensusError(f"loop {lp['site']} has no PIPELINE pragma the census could pair")
        declared = spec["declared_ii"]
        alloc = spec.get("alloc", {})
        reach, limited = declared, "declared"
        for name, acc in lp["bank_max"].items():
            p = ports_of(name)
            if p is None:
                continue
            ii = -(-acc // p)
            if ii > reach:
                reach, limited = ii, f"{name}: {acc} accesses to one bank per iteration, {p} ports"
        inst_ops = {}
        for op, n in lp["ops"].items():
            lim = alloc.get(op)
            if lim:
                inst_ops[op] = min(n, lim)
                ii = -(-n // lim)
                if ii > reach:
                    reach, limited = ii, f"ALLOCATION {op} limit={lim}: {n} per iteration"
            else:
                inst_ops[op] = n
        for kind in ("reads", "writes"):
            for b, st in lp[kind].items():
                if st["max_per_iter"] > reach and st["max_per_iter"] > 1:
                    reach, limited = st["max_per_iter"], f"{b}: {st['max_per_iter']} {kind} per iteration"
        cost = _price_ops(inst_ops, costs)
        cost["lut"] += LOOP_MODULE[0]
        cost["ff"] += LOOP_MODULE[1]
        for k in total:
            total[k] += cost[k]
        for op, n in inst_ops.items():
            ops_total[op] = ops_total.get(op, 0) + n
        name = lp["path"].split("/")[-1].split("@")[0] if lp["path"] else "?"
        loops.append({"name": f"{name} ({lp['site']})", "site": lp["site"], "instance": lp["path"],
                      "class": spec.get("class"), "declared_ii": declared, "reachable_ii": reach,
                      "limited_by": limited, "trip_count": round(lp["iters"] / max(1, lp["activations"]), 1),
                      "ops": inst_ops, "cost": cost})
        for kind in ("reads", "writes"):
            for b, st in sorted(lp[kind].items()):
                why = []
                if st["iters_with"] < st["iters"]:
                    why.append(f"conditional: {st['iters'] - st['iters_with']} of {st['iters']} iterations "
                               "without an access")
                if st["max_per_iter"] > 1:
                    why.append(f"{st['max_per_iter']} accesses per iteration")
                if st["noncontig"]:
                    why.append(f"not contiguous: {st['noncontig']} address jumps")
                maxi.append({"bundle": b, "loop": f"{name} ({lp['site']})", "instance": lp["path"],
                             "direction": kind[:-1], "burst_eligible": not why,
                             "reason": "; ".join(why) or "unconditional, one access per iteration, contiguous"})
    funcs = []
    for fr in raw["funcs"]:
        path = _collapse(fr["path"], shared, inlined)
        if any(f["instance"] == path for f in funcs):
            continue
        scal = {op: 1 for op, n in fr["ops"].items() if n}  # non-pipelined code: one operator per kind, shared by the FSM
        cost = _price_ops(scal, costs)
        for k in total:
            total[k] += cost[k]
        funcs.append({"instance": path, "scalar_ops": scal, "cost": cost})
        for b, n in fr["maxi_outside"].items():
            maxi.append({"bundle": b, "loop": "(outside pipelined loops)", "instance": path, "direction": "access",
                         "burst_eligible": False, "reason": f"{n} single accesses outside a pipelined loop"})

    # on-chip arrays
    uram_ok = board["resources"].get("uram", 0) > 0
    mem = {"bram36": 0, "uram": 0, "lut": 0, "ff": 0}
    arr_rows = []
    for name, a in sorted(arrays.items()):
        d0, d1 = a["dims"]
        width = 8 * a["elem_bytes"]
        n = d0 * d1
        p = pragmas["arrays"].get(name)
        st = pragmas["storage"].get(name, {})
        impl = st.get("impl", "auto")
        if p and p["reshape"] and p["type"] == "complete":
            size = d1 if p["dim"] == 2 else d0
            banks, depth, width = 1, n // size, width * size
        elif p and p["type"] == "complete":
            banks, depth = (n, 1) if p["dim"] in (0, 1) and d1 == 1 else ((d1, d0) if p["dim"] == 2 else (d0, d1))
        elif p:
            size = d1 if p["dim"] == 2 else d0
            banks = min(p["factor"], size)
            depth = n // size * -(-size // banks)
        else:
            banks, depth = 1, n
        bits = depth * width
        row = {"name": name, "elements": n, "width": width, "banks": banks, "depth": depth}
        if a["rom"] and p and p["type"] == "complete":
            row["kind"] = "LUT-ROM per lookup"  # priced with the loop's lookups below
            lookups = max((lp["bank_max"].get(name, 0) for lp in inst.values()), default=0)
            lut = lookups * -(-n // 64) * width
            mem["lut"] += lut
            row["lut"] = lut
        elif depth == 1:
            row["kind"] = "registers"
            mem["ff"] += banks * width
        elif impl == "uram" and uram_ok:
            row["kind"] = "URAM"
            row["uram"] = banks * _uram_for(depth, width)
            mem["uram"] += row["uram"]
        elif impl in ("lutram",) or (impl == "auto" and bits <= LUTRAM_MAX_BITS):
            row["kind"] = "LUTRAM"
            lut = banks * 2 * -(-depth // 64) * width
            row["lut"] = lut
            mem["lut"] += lut
        else:
            row["kind"] = "BRAM"
            row["bram36"] = banks * _bram36_for(depth, width)
            mem["bram36"] += row["bram36"]
        arr_rows.append(row)

    # m_axi adapters and their FIFOs: the bundles this build has (the ones its run accessed; a port's
    # pragma under `#if MMFREE_WEIGHT_PORTS > P` is not in a build with fewer ports)
    used_bundles = {m["bundle"] for m in maxi}
    fifo = {"bram36": 0}
    adapters = {"lut": 0, "ff": 0}
    bundles = {}
    for port, i in pragmas["interfaces"].items():
        if i["bundle"] not in used_bundles:
            continue
        b = bundles.setdefault(i["bundle"], {"ports": [], "read_burst": 0, "read_outstanding": 0, "write_burst": 0,
                                             "write_outstanding": 0})
        b["ports"].append(port)
        for k in ("read_burst", "read_outstanding", "write_burst", "write_outstanding"):
            b[k] = max(b[k], i[k])
    port_bits = board["port_bits"]
    written = {m["bundle"] for m in maxi if m["direction"] == "write"}
    for name, b in bundles.items():
        width = 16 if name == "gmem_emb" else port_bits
        b["width"] = width
        b["read_fifo_bram36"] = _bram36_for(b["read_outstanding"] * b["read_burst"], width)
        b["write_fifo_bram36"] = _bram36_for(b["write_outstanding"] * b["write_burst"], width) if name in written else 0
        fifo["bram36"] += b["read_fifo_bram36"] + b["write_fifo_bram36"]
        lut, ff = MAXI_ADAPTER["rw" if name in written else "ro"]
        b["lut"], b["ff"] = lut, ff
        adapters["lut"] += lut
        adapters["ff"] += ff

    return {"family": fam, "loops": loops, "funcs": funcs, "maxi": maxi, "arrays": arr_rows, "bundles": bundles,
            "ops_total": ops_total, "logic": total, "memory": mem, "fifo": fifo, "adapters": adapters}


def resources(result: dict, board: dict, block_design: Dict[str, int]) -> dict:
    """{lut, ff, dsp, bram36, uram: {used, available, percent}} of kernel + block design."""
    used = {
        "lut": result["logic"]["lut"] + result["memory"]["lut"] + result["adapters"]["lut"] + block_design["lut"],
        "ff": result["logic"]["ff"] + result["memory"]["ff"] + result["adapters"]["ff"] + block_design["ff"],
        "dsp": result["logic"]["dsp"],
        "bram36": result["memory"]["bram36"] + result["fifo"]["bram36"],
        "uram": result["memory"]["uram"],
    }
    out = {}
    for k, v in used.items():
        avail = board["resources"].get(k, 0)
        out[k] = {"used": int(v), "available": int(avail),
                  "percent": round(100.0 * v / avail, 1) if avail else (0.0 if v == 0 else float("inf"))}
    return out


def census(board_name: str, hls_dir: str = HLS, out_dir: Optional[str] = None, write: bool = True,
           shape=SHAPE, tokens: int = 1) -> dict:
    """Build, run, analyse and price the census of one board; writes build/census/<board>.json (T = 1)."""
    from . import boards as B
    board = B.get(board_name)
    b = build(board_name, hls_dir=hls_dir, out_dir=out_dir, tokens=tokens)
    raw = run(b["exe"], shape)
    res = analyse(raw, b["pragmas"], board, board_name)
    bd = B.block_design_estimate(board_name)
    res["resources"] = resources(res, board, bd)
    res["block_design"] = bd
    res["board"] = board_name
    res["tokens"] = tokens
    res["clock_mhz"] = board["clock_mhz"]
    res["shape"] = raw["shape"]
    res["sources_sha"] = b["digest"]
    res["pragmas"] = {"interfaces": b["pragmas"]["interfaces"], "arrays": b["pragmas"]["arrays"],
                      "storage": b["pragmas"]["storage"], "shared": b["pragmas"]["shared"]}
    res["not_seen"] = ["loop-carried latency (a float recurrence shorter than its operator's latency)",
                       "timing closure and csynth's own sharing heuristics",
                       "block design (SmartConnect, INTC, reset): fixed figures from mmfree.boards",
                       "operator costs are AMD's published figures per family, not this design's csynth"]
    if write:
        name = f"{board_name}.json" if tokens == 1 else f"{board_name}-t{tokens}.json"
        path = os.path.join(out_dir or BUILD, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp%d" % os.getpid()
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=1)
        os.replace(tmp, path)
        res["path"] = path
    return res


def load_or_run(board_name: str) -> dict:
    """The census of the current sources for a board: build/census/<board>.json if it matches them, else a new run."""
    path = os.path.join(BUILD, f"{board_name}.json")
    try:
        cached = json.load(open(path, encoding="utf-8"))
        b = build(board_name)
        if cached.get("sources_sha") == b["digest"]:
            cached["path"] = path
            return cached
    except (OSError, ValueError):
        pass
    return census(board_name)


def class_ii(result: dict) -> Dict[str, int]:
    """Reachable II per cycle-model class (mv, vec, red, mem): the slowest loop of each class."""
    out: Dict[str, int] = {}
    for lp in result["loops"]:
        c = lp.get("class")
        if c:
            out[c] = max(out.get(c, 0), lp["reachable_ii"])
    return out


def weight_stream_bursts(result: dict) -> bool:
    """True when every weight-port read in a pipelined loop is burst-eligible."""
    rows = [m for m in result["maxi"] if m["bundle"].startswith("gmem_w")]
    return bool(rows) and all(m["burst_eligible"] for m in rows)


# ------------------------------------------------------------------------------------------------
# tables

def format_tables(res: dict) -> str:
    out = [f"census of hls/ for {res['board']} ({res['family']}, {res['clock_mhz']} MHz): model from the code, "
           "not csynth", ""]
    out.append("resources        used / available   percent")
    for k in ("lut", "ff", "dsp", "bram36", "uram"):
        r = res["resources"][k]
        out.append(f"  {k:<8} {r['used']:>10,} / {r['available']:<10,} {r['percent']:>6}%")
    out.append("")
    out.append(f"{'loop':<40} {'instance':<44} {'II decl':>7} {'II reach':>8} {'trips':>7}  limited by")
    for lp in res["loops"]:
        inst = lp["instance"]
        inst = inst if len(inst) <= 44 else "..." + inst[-41:]
        out.append(f"{lp['name']:<40} {inst:<44} {lp['declared_ii']:>7} {lp['reachable_ii']:>8} "
                   f"{lp['trip_count']:>7}  {lp['limited_by']}")
    out.append("")
    out.append(f"{'bundle':<9} {'dir':<6} {'loop':<40} {'burst':<6} reason")
    seen = set()
    for m in res["maxi"]:
        key = (m["bundle"], m["direction"], m["loop"], m["burst_eligible"], m["reason"].split(":")[0])
        if key in seen:
            continue
        seen.add(key)
        out.append(f"{m['bundle']:<9} {m['direction']:<6} {m['loop']:<40} {'yes' if m['burst_eligible'] else 'NO':<6} "
                   f"{m['reason']}")
    out.append("")
    out.append("float operator instances: " + ", ".join(f"{k} {v}" for k, v in sorted(res["ops_total"].items())
                                                         if k in FLOAT_OPS))
    out.append("not seen by the census: " + "; ".join(res["not_seen"]))
    return "\n".join(out)


def format_tokens(rows: Dict[int, dict]) -> str:
    out = ["activation vectors per weight word (T; the build is T = 1): resources used, percent of the board",
           f"{'T':>3} " + " ".join(f"{k:>16}" for k in ("lut", "ff", "dsp", "bram36", "uram"))]
    for t, r in sorted(rows.items()):
        out.append(f"{t:>3} " + " ".join(f"{r[k]['used']:>9,} {r[k]['percent']:>5}%" for k in
                                           ("lut", "ff", "dsp", "bram36", "uram")))
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mmfree.census", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--board", default="kv260", help="board from python/mmfree/data/boards.json")
    ap.add_argument("--json", action="store_true", help="print the JSON instead of the tables")
    ap.add_argument("--tokens", default="1,2,4",
                    help="T values (activation vectors per weight word) to price; the first one is the table's")
    args = ap.parse_args(argv)
    from . import boards as B
    try:
        name = B.normalize(args.board)
        B.get(name)
        ts = [int(t) for t in args.tokens.split(",")]
        if not ts or any(t < 1 or t > 8 for t in ts):
            raise ValueError("--tokens: T values between 1 and 8")
        res = census(name, tokens=ts[0])
        per_t = {ts[0]: res["resources"]}
        for t in ts[1:]:
            per_t[t] = census(name, tokens=t)["resources"]
    except (CensusError, KeyError, ValueError) as e:
        print(f"census: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print(format_tables(res))
        if len(per_t) > 1:
            print("\n" + format_tokens(per_t))
    print(f"\nwrote {res['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
