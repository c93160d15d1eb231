"""The synthesizable HLS sources stay inside what Vitis HLS synthesizes.

Checked over hls/include/*.h and hls/mmfree_kernel/*.{h,cpp} with C-simulation-only regions
(#ifndef __SYNTHESIS__ / #if !defined(__SYNTHESIS__) ... #else/#endif) removed: no dynamic allocation,
recursion (direct, or through templates), STL containers, variable-length arrays, unbounded loops or
libm calls; only known pragma names and options (a misspelled pragma is an error, not a silent no-op);
no m_axi access under an `if` or `?:` (UG1399's burst precondition); every top-level argument of
mmfree_kernel has an INTERFACE pragma; every pipelined loop with a run-time bound has a LOOP_TRIPCOUNT.
What these patterns cannot judge (bank ports, reachable II, burst eligibility at run time, operator
counts) is the census's job: tests/test_census.py.
"""

import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = sorted(glob.glob(os.path.join(ROOT, "hls", "include", "*.h")) +
                 glob.glob(os.path.join(ROOT, "hls", "mmfree_kernel", "*.h")) +
                 glob.glob(os.path.join(ROOT, "hls", "mmfree_kernel", "*.cpp")))
TOP = os.path.join(ROOT, "hls", "mmfree_kernel", "mmfree_kernel.cpp")
REGS_H = os.path.join(ROOT, "hls", "include", "mmfree_regs.h")
MAX_WEIGHT_PORTS = int(re.search(r"#define\s+MMFREE_MAX_WEIGHT_PORT_REGS\s+(\d+)", open(REGS_H).read()).group(1))

LIBM = r"\b(?<!hls::)(?:std::)?(sqrtf?|expf?|exp2f?|logf?|log2f?|log10f?|powf?|tanhf?|sinf?|cosf?|tanf?|floorf?|ceilf?|fabsf?|roundf?|truncf?|fmodf?|erff?)\s*\("
STL = r"\bstd::(vector|map|unordered_map|set|unordered_set|list|deque|string|queue|stack|array|function|shared_ptr|unique_ptr)\b|#include\s*<(vector|map|list|deque|string|set|unordered_map|memory|functional)>"
ALLOC = r"\bnew\s+[\w:<>]+|\bdelete\b|\b(malloc|calloc|realloc|free)\s*\("


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def synthesis_view(text):
    """Drop #ifndef __SYNTHESIS__ branches (keep their #else), keep #ifdef __SYNTHESIS__ branches."""
    out, stack = [], []  # stack of (kind, keep)
    for line in strip_comments(text).split("\n"):
        s = line.strip()
        keep = all(k for _, k in stack)
        if re.match(r"#\s*ifndef\s+__SYNTHESIS__", s) or re.match(r"#\s*if\s+!\s*defined\s*\(?\s*__SYNTHESIS__", s):
            stack.append(("syn", False))
            continue
        if re.match(r"#\s*ifdef\s+__SYNTHESIS__", s):
            stack.append(("syn", True))
            continue
        if re.match(r"#\s*if", s):
            stack.append(("other", True))
            out.append(line if keep else "")
            continue
        if re.match(r"#\s*else", s) and stack:
            kind, k = stack[-1]
            if kind == "syn":
                stack[-1] = (kind, not k)
                continue
        if re.match(r"#\s*endif", s) and stack:
            kind, _ = stack.pop()
            if kind == "syn":
                continue
        out.append(line if keep else "")
    return "\n".join(out)


def functions(text):
    """{name: body} of function definitions (brace-matched)."""
    out = {}
    for m in re.finditer(r"\b(\w+)\s*\([^;{}()]*(?:\([^()]*\)[^;{}()]*)*\)\s*(?:const\s*)?\{", text):
        name = m.group(1)
        if name in ("if", "for", "while", "switch", "return", "sizeof"):
            continue
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        out.setdefault(name, text[m.end():i])
    return out


# Vitis HLS pragmas and their options (UG1399, "HLS Pragmas"); anything else is a typo that g++ and
# -Wno-unknown-pragmas would let through silently
PRAGMAS = {
    "PIPELINE": {"ii", "off", "rewind", "style", "enable_flush"},
    "UNROLL": {"factor", "off", "skip_exit_check"},
    "INLINE": {"off", "recursive"},
    "ARRAY_PARTITION": {"variable", "type", "factor", "dim", "cyclic", "block", "complete", "off"},
    "ARRAY_RESHAPE": {"variable", "type", "factor", "dim", "cyclic", "block", "complete", "object", "off"},
    "BIND_STORAGE": {"variable", "type", "impl", "latency"},
    "BIND_OP": {"variable", "op", "impl", "latency"},
    "ALLOCATION": {"instances", "limit", "operation", "function"},
    "DEPENDENCE": {"variable", "type", "direction", "distance", "dependent", "class", "inter", "intra", "raw",
                   "war", "waw", "true", "false", "array", "pointer"},
    "LOOP_TRIPCOUNT": {"min", "max", "avg"},
    "INTERFACE": {"port", "bundle", "offset", "depth", "max_read_burst_length", "max_write_burst_length",
                  "num_read_outstanding", "num_write_outstanding", "latency", "max_widen_bitwidth", "register",
                  "storage_impl", "name", "m_axi", "s_axilite", "ap_none", "ap_ctrl_hs", "ap_ctrl_none",
                  "ap_ctrl_chain", "axis", "ap_memory", "bram", "slave", "direct", "off", "clock", "mode"},
    "DATAFLOW": {"disable_start_propagation"},
    "STREAM": {"variable", "depth", "type", "off"},
    "LOOP_FLATTEN": {"off"},
    "LOOP_MERGE": {"force"},
    "EXPRESSION_BALANCE": {"off"},
    "LATENCY": {"min", "max"},
    "TOP": {"name"},
}
M_AXI_TYPES = r"(?:wport_t|ioport_t|embport_t)"


def pragma_violations(syn):
    v = []
    for m in re.finditer(r"#\s*pragma\s+HLS\s+(\w+)([^\n]*)", syn, flags=re.I):
        name = m.group(1).upper()
        if name not in PRAGMAS:
            v.append(f"unknown pragma HLS {m.group(1)}")
            continue
        for opt in m.group(2).split():
            key = opt.split("=", 1)[0].lower()
            if key and key not in PRAGMAS[name]:
                v.append(f"pragma HLS {name}: unknown option {key!r}")
    return v


def vla_violations(syn):
    """Arrays declared with a run-time size (a lower-case name: a variable, not a constant or template
    argument, which this code base writes in capitals)."""
    v = []
    for m in re.finditer(r"^\s*(?:static\s+)?(?:const\s+)?[\w:<>]+\s+\w+\s*((?:\[[^\]]+\])+)\s*[;=]", syn, flags=re.M):
        for size in re.findall(r"\[([^\]]+)\]", m.group(1)):
            if re.search(r"\b[a-z_][a-z0-9_]*\b", size):
                v.append(f"variable-length array: {m.group(0).strip()!r}")
    return v


def maxi_conditional_violations(syn):
    """An m_axi argument indexed under an `if`/`else` or in a `?:` inside a function: the access is
    conditional, which loses burst inference (UG1448, burst failure 10)."""
    v = []
    for name, body in functions(syn).items():
        header = re.search(rf"\b{name}\s*\(([^{{]*)\)\s*(?:const\s*)?\{{", syn)
        params = header.group(1) if header else ""
        ports = set(re.findall(rf"{M_AXI_TYPES}\s+(\w+)", params))
        if "MMFREE_WPORT_PARAMS" in params:
            ports |= {f"w{p}" for p in range(MAX_WEIGHT_PORTS)}
        if not ports:
            continue
        stack = []
        for line in body.split("\n"):
            s = line.strip()
            conditional = bool(re.match(r"(\}\s*)?(else\b|if\s*\()", s)) or any(k == "if" for k in stack)
            for p in ports:
                for m in re.finditer(rf"\b{p}\s*\[", s):
                    before = s[:m.start()]
                    if conditional or "?" in before or re.search(r"\bif\s*\(", before):
                        v.append(f"m_axi argument {p} accessed under a condition: {s!r}")
            for _ in range(s.count("}")):
                if stack:
                    stack.pop()
            for _ in range(s.count("{")):
                stack.append("if" if re.match(r"(\}\s*)?(else\b|if\s*\()", s) else "block")
    return v


def violations(text, top=False):
    v = []
    syn = synthesis_view(text)
    v += pragma_violations(syn) + vla_violations(syn) + maxi_conditional_violations(syn)
    for pat, what in ((ALLOC, "dynamic allocation"), (STL, "STL container"), (LIBM, "libm call")):
        for m in re.finditer(pat, syn):
            v.append(f"{what}: {m.group(0)!r}")
    if re.search(r"#\s*include\s*[<\"](cmath|math\.h)[>\"]", syn):
        v.append("libm header")
    for m in re.finditer(r"\bwhile\s*\(([^)]*)\)", syn):
        if m.group(1).strip() != "0":  # do { } while (0) macros only
            v.append(f"while loop (unbounded?): {m.group(0)!r}")
    for m in re.finditer(r"\bfor\s*\(([^;]*);([^;]*);", syn):
        if not re.search(r"<|>|!=", m.group(2)):
            v.append(f"for loop without a bound: {m.group(0)!r}")
    # recursion: any cycle in the call graph of functions defined here
    fns = functions(syn)
    calls = {f: {c for c in re.findall(r"\b(\w+)\s*(?:<[^;{}()]*>)?\s*\(", body) if c in fns}
             for f, body in fns.items()}  # f<N - 1>(...) is a call of f: recursion through templates

    def reach(f, seen):
        for c in calls[f]:
            if c not in seen:
                seen.add(c)
                reach(c, seen)
        return seen

    for f in fns:
        if f in reach(f, set()):
            v.append(f"recursion through {f}")
    # pipelined loops with a run-time bound need a LOOP_TRIPCOUNT
    lines = syn.split("\n")
    for i, line in enumerate(lines):
        m = re.search(r"\bfor\s*\([^;]*;\s*\w+\s*(<=|<)\s*([^;]+);", line)
        if not m:
            continue
        body = "\n".join(lines[i + 1:i + 4])
        if "PIPELINE" in body and not re.fullmatch(r"\s*([A-Z_][A-Z_0-9]*|\d+)\s*", m.group(2)):
            if "LOOP_TRIPCOUNT" not in body:
                v.append(f"pipelined loop with run-time bound and no LOOP_TRIPCOUNT: {line.strip()!r}")
    return v


def top_interface_violations(text):
    v = []
    syn = synthesis_view(text)
    m = re.search(r"void\s+mmfree_kernel\s*\(([^{]*)\)\s*\{", syn)
    assert m, "mmfree_kernel definition not found"
    params = m.group(1)
    # MMFREE_WPORT_PARAMS expands to w0..w(ports-1): every port a build may have needs its pragmas
    params = params.replace("MMFREE_WPORT_PARAMS",
                            ", ".join(f"const word_t *w{p}" for p in range(MAX_WEIGHT_PORTS)))
    names = [re.findall(r"(\w+)\s*$", p.strip())[0] for p in params.split(",") if p.strip()]
    pragmas = re.findall(r"#pragma\s+HLS\s+INTERFACE\s+(\w+)\s+port=(\w+)", syn)
    ports = {p for _, p in pragmas}
    for n in names:
        if n not in ports:
            v.append(f"argument {n} has no INTERFACE pragma")
    if ("s_axilite", "return") not in pragmas:
        v.append("no s_axilite INTERFACE for return (ap_ctrl_hs)")
    for kind, p in pragmas:
        if kind == "m_axi":
            line = re.search(rf"INTERFACE\s+m_axi\s+port={p}\b[^\n]*", syn).group(0)
            for key in ("depth=", "max_read_burst_length=", "offset=slave", "bundle="):
                if key not in line:
                    v.append(f"m_axi port {p} lacks {key}")
    for p in re.findall(r"INTERFACE\s+s_axilite\s+port=(\w+)(?![^\n]*offset=)", syn):
        if p != "return":
            v.append(f"s_axilite port {p} has no explicit offset")
    return names, v


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: os.path.relpath(p, ROOT))
def test_synthesizable_subset(path):
    assert violations(open(path).read()) == []


def test_top_level_interfaces():
    names, v = top_interface_violations(open(TOP).read())
    assert v == []
    assert {"op", "d", "x", "h", "emb", "out"} | {f"w{p}" for p in range(6)} <= set(names)
    assert MAX_WEIGHT_PORTS == 6
    syn = synthesis_view(open(TOP).read())
    for p in range(MAX_WEIGHT_PORTS):
        assert re.search(rf"INTERFACE\s+m_axi\s+port=w{p}\s[^\n]*bundle=gmem_w{p}\b", syn), p


def test_weight_ports_statically_bound_and_no_runtime_divide():
    """No run-time choice between weight pointers (m_axi bundles), e.g. `p == 0 ? w0 : w1`, and no
    divide or modulo by a run-time row count in the synthesizable per-row/per-lane paths."""
    for path in SOURCES:
        syn = synthesis_view(open(path).read())
        rel = os.path.relpath(path, ROOT)
        assert not re.search(r"\?\s*(\w+\.)?w\d\b\s*:", syn), rel
        assert not re.search(r"[/%]\s*rpp\b", syn), rel


def test_checker_catches_violations():
    bad = """
    #include <vector>
    #include <cmath>
    int f(int n) { return n ? f(n - 1) : 0; }
    void g(float *a, int n) {
        int *p = new int[4];
        std::vector<int> v;
        while (n) { n--; }
        for (int i = 0; i < n; i++) {
    #pragma HLS PIPELINE II=1
            a[i] = std::exp(a[i]) + sqrtf(a[i]);
        }
        free(p);
    }
    """
    v = " | ".join(violations(bad))
    for what in ("dynamic allocation", "STL container", "libm call", "libm header", "while loop", "recursion",
                 "LOOP_TRIPCOUNT"):
        assert what in v, what
    hls_bad = """
    template <int N> int sum(int a) { return N == 0 ? a : sum<N - 1>(a) + 1; }
    void h(wport_t w, int n, float *o) {
        float buf[n];
    #pragma HLS PIPLINE II=1
    #pragma HLS ARRAY_PARTITION variable=buf cyclick factor=2
        for (int i = 0; i < 8; i++) {
    #pragma HLS PIPELINE II=1
            if (i < n) o[i] = w[i];
            o[i] += i > 2 ? w[i + 1] : 0;
        }
    }
    """
    v = " | ".join(violations(hls_bad))
    for what in ("recursion through sum", "variable-length array", "unknown pragma HLS PIPLINE",
                 "unknown option 'cyclick'", "m_axi argument w accessed under a condition: 'if (i < n)",
                 "m_axi argument w accessed under a condition: 'o[i] +="):
        assert what in v, what
    ok = """
    #if !defined(__SYNTHESIS__)
    static int trace_only[4];
    #endif
    #ifndef __SYNTHESIS__
    #include <vector>
    static std::vector<int> trace_only;
    #endif
    inline float s(float v) {
    #ifdef __SYNTHESIS__
        return hls::sqrtf(v);
    #else
        return std::sqrt(v);
    #endif
    }
    """
    assert violations(ok) == []
