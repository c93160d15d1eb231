"""C-simulated mmfree_kernel (hls/) against the golden model, bit for bit, every intermediate.

- the C++ testbench (hls/tb/tb_mmfree.cpp) on golden vector files: embed, every layer, head,
  both packings, shapes with d and I not multiples of 16 lanes nor of a bus word's 64/80 codes;
  and the whole-token ops on the weights arena and [L, pad4(d)] state: BODY (a prompt token) and
  TOKEN (a decode token), every layer's intermediates layer-qualified, state rows and logits;
- the shared library through python/mmfree/csim.py over several tokens (the emulator's path);
- mutation: one flipped weight bit (a layer blob; layer 1 inside the arena of a TOKEN vector), one
  altered base-3 LUT entry, make the testbench fail;
- register map: the header's offsets are the pragmas' offsets; layout: Python == C++.
"""

import os
import re
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

from conftest import build_csim

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, HERE)

from mmfree import csim  # noqa: E402
from mmfree.golden import GoldenModel  # noqa: E402

BOARD = "kv260"
BUILD = os.path.join(ROOT, "build", "csim", BOARD)
TB = os.path.join(BUILD, "tb_mmfree")
KERNEL_CPP = os.path.join(ROOT, "hls", "mmfree_kernel", "mmfree_kernel.cpp")

# d, I not multiples of 16 (vector lanes) nor of 64/80 (codes per bus word); V odd
SHAPES = {
    "s70": dict(vocab_size=37, hidden_size=70, num_hidden_layers=2, intermediate_size=150),
    "s48": dict(vocab_size=101, hidden_size=48, num_hidden_layers=1, intermediate_size=128),
    "s200": dict(vocab_size=301, hidden_size=200, num_hidden_layers=2, intermediate_size=344),
}
TOKENS = (3, 17, 0)
DT = {np.dtype(np.float32): 0, np.dtype(np.int32): 1, np.dtype(np.int8): 2, np.dtype(np.uint8): 3,
      np.dtype(np.uint16): 4, np.dtype(np.uint32): 5}


@pytest.fixture(scope="session")
def csim_build():
    """`make csim` once per session (incremental: a no-op when up to date)."""
    build_csim(BOARD)
    return BUILD


@pytest.fixture(scope="session")
def packed_models(tmp_path_factory):
    from conftest import make_packed
    out = {}
    tmp = tmp_path_factory.mktemp("csim-models")
    for name, shape in SHAPES.items():
        for packing in ("2bit", "base3"):
            _, path = make_packed(tmp, shape=shape, packing=packing, seed=len(name))
            out[(name, packing)] = path
    return out


# ----------------------------------------------------------------------------------------------
# golden expectations
# ----------------------------------------------------------------------------------------------

PROJ = csim.PROJ


LAYER_VEC_KEYS = ("forget", "state", "o_in", "z", "x")  # golden's layer-level trace vectors


def test_golden_trace_keys_do_not_clash(packed_models):
    """Every projection keeps its own trace dict; the forget gate vector has its own key."""
    g = GoldenModel(packed_models[("s48", "2bit")])
    tr = {}
    g.step(1, trace=tr)
    p = "layers.0."
    for proj in PROJ:
        assert isinstance(tr[p + proj], dict) and set(tr[p + proj]) == {"absmax", "q", "acc", "scale", "out"}, proj
    assert not set(LAYER_VEC_KEYS) & set(PROJ)
    for k in LAYER_VEC_KEYS:
        assert isinstance(tr[p + k], np.ndarray), k


def layer_expect(tr, li):
    p = f"layers.{li}."
    e = {}
    for proj in PROJ:
        t = tr[p + proj]
        for k in ("absmax", "q", "acc", "scale", "out"):
            e[f"{proj}.{k}"] = np.asarray(t[k]).reshape(-1)
    for k in LAYER_VEC_KEYS:
        e[k] = np.asarray(tr[p + k], np.float32).reshape(-1)
    return e


def head_expect(tr):
    return {f"lm_head.{k}": np.asarray(tr["lm_head"][k]).reshape(-1) for k in ("absmax", "q", "acc", "scale", "out")}


def golden_calls(path, tokens=TOKENS):
    """[(op, token, inputs, expect)] for every kernel call of a few decode steps."""
    g = GoldenModel(path)
    calls = []
    for tok in tokens:
        h_before = g.h.copy()
        tr = {}
        logits = g.step(tok, trace=tr)
        x0 = np.asarray(tr["embed"], np.float32).reshape(-1)
        calls.append(("embed", tok, {}, {"x": x0, "x_out": x0}))
        x = x0
        for li in range(g.n_layers):
            e = layer_expect(tr, li)
            e["x_out"], e["h_out"] = e["x"], e["state"]
            calls.append(("layer", li, {"x": x, "h": h_before[li]}, e))
            x = e["x"]
        e = head_expect(tr)
        e["out"] = np.asarray(logits, np.float32)
        calls.append(("head", None, {"x": x}, e))
    return g, calls


WHOLE = (3, 17)  # (BODY prompt token from the zero state, then the TOKEN decode token)


def whole_calls(path, prompt=WHOLE[0], token=WHOLE[1]):
    """[(kind, token, inputs, expect)] of a BODY call (prompt token, zero state) and a TOKEN call (the
    next token): inputs x, the [L, pad4(d)] state and the logits buffer (a sentinel: BODY must leave it,
    TOKEN must overwrite all V); expect every traced value layer-qualified as golden names it."""
    g = GoldenModel(path)
    L, d, p4 = g.n_layers, g.d, csim.pad4(g.d)
    vp4 = csim.pad4(g.config.vocab_size)
    calls = []
    x_in = np.full(p4, -2.5, np.float32)  # stale x: the embed overwrites it
    for kind, tok in (("body", prompt), ("token", token)):
        state = np.zeros((L, p4), np.float32)
        state[:, :d] = g.h
        sentinel = np.full(vp4, np.float32(-7.0), np.float32)
        tr = {}
        logits = g.step(tok, trace=tr)
        e = {"embed.x": np.asarray(tr["embed"], np.float32).reshape(-1)}
        for li in range(L):
            e.update({f"layers.{li}.{k}": v for k, v in layer_expect(tr, li).items()})
        after = np.zeros((L, p4), np.float32)
        after[:, :d] = g.h
        e["x_out"] = e[f"layers.{L - 1}.x"]
        e["h_out"] = after.reshape(-1)
        if kind == "token":
            e.update(head_expect(tr))
            e["out"] = np.asarray(logits, np.float32)
        else:
            e["out"] = sentinel[:g.config.vocab_size]
        calls.append((kind, tok, {"x": x_in, "h": state.reshape(-1), "out": sentinel}, e))
        x_in = np.zeros(p4, np.float32)
        x_in[:d] = e["x_out"]
    return g, calls


def write_vectors(fname, regs, inputs, expect):
    with open(fname, "wb") as f:
        f.write(b"MMFVEC1\n")

        def entry(name, a):
            a = np.ascontiguousarray(a)
            nb = name.encode()
            f.write(struct.pack("<I", len(nb)) + nb + struct.pack("<IQ", DT[a.dtype], a.size))
            f.write(a.tobytes())

        entry("regs", np.asarray(regs, np.uint32))
        for k, v in inputs.items():
            entry(k, v)
        for k, v in expect.items():
            entry("expect/" + k, v)


def boards_get(board):
    from mmfree import boards
    return boards.get(board)


def vector_files(path, outdir, tokens=TOKENS, whole=True, ports=None):
    """Golden vector files of every call (per op over `tokens`; with `whole`, a BODY and a TOKEN call on
    the arena) for a build with `ports` weight ports (default: the kv260 build's); returns [(file, kind)]."""
    if ports is None:
        ports = boards_get(BOARD)["weight_ports"]
    g, calls = golden_calls(path, tokens)
    if whole:
        calls += whole_calls(path)[1]
    pk_ = g.packed
    cfg = g.config
    packing = csim.PACKING_CODE[pk_.packing]
    blobs = {}
    files = []
    os.makedirs(outdir, exist_ok=True)
    for n, (kind, arg, inputs, expect) in enumerate(calls):
        op = {"embed": csim.OP_EMBED, "layer": csim.OP_LAYER, "head": csim.OP_HEAD, "body": csim.OP_BODY,
              "token": csim.OP_TOKEN}[kind]
        regs = [op, cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, packing,
                arg if kind in ("embed", "body", "token") else 0, cfg.num_hidden_layers]
        inp = dict(inputs)
        if kind in ("embed", "body", "token"):
            inp["emb"] = np.asarray(pk_.tensor("embeddings"), np.uint16)
        if kind in ("body", "token"):
            if "arena" not in blobs:
                blobs["arena"] = csim.pack_arena(pk_, ports=ports)
            inp["blob"] = blobs["arena"]
        elif kind == "layer":
            if arg not in blobs:
                blobs[arg] = csim.pack_layer_blob(pk_, arg, ports=ports)
            inp["blob"] = blobs[arg]
        elif kind == "head":
            if "head" not in blobs:
                blobs["head"] = csim.pack_head_blob(pk_, ports=ports)
            inp["blob"] = blobs["head"]
        for k in ("x", "h", "out"):
            if k in inp:
                inp[k] = np.asarray(inp[k], np.float32)
        fname = os.path.join(outdir, f"{n:03d}-{kind}.mmv")
        write_vectors(fname, regs, inp, expect)
        files.append((fname, kind))
    return files


def run_tb(files, tb=TB):
    return subprocess.run([tb] + list(files), capture_output=True, text=True, timeout=300)


# ----------------------------------------------------------------------------------------------
# testbench on golden vectors
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def vectors(csim_build, packed_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("vectors")
    return {key: vector_files(path, str(root / f"{key[0]}-{key[1]}")) for key, path in packed_models.items()}


def test_testbench_all_ops_shapes_packings(vectors):
    files = [f for fs in vectors.values() for f, _ in fs]
    kinds = {k for fs in vectors.values() for _, k in fs}
    assert kinds == {"embed", "layer", "head", "body", "token"}
    r = run_tb(files)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert f"{len(files)} passed, 0 failed" in r.stdout


def test_testbench_pynq_z2_two_64bit_ports(packed_models, tmp_path):
    """Vectors laid out for 2 ports through a build for PYNQ-Z2 (2 weight ports x 64 bits: two beats per
    row word, one float lane)."""
    r = subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "hls"), "tb", "BOARD=pynq-z2", f"PY={sys.executable}"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    files = [f for key in (("s70", "2bit"), ("s70", "base3"), ("s200", "base3"))
             for f, _ in vector_files(packed_models[key], str(tmp_path / f"{key[0]}-{key[1]}"), ports=2)]
    r = run_tb(files, tb=os.path.join(ROOT, "build", "csim", "pynq-z2", "tb_mmfree"))
    assert r.returncode == 0, r.stdout[-4000:]
    assert "2 weight ports x 64 bits" in r.stdout


@pytest.mark.parametrize("ports,lanes", [(1, 4), (3, 1), (6, 4)])
def test_testbench_other_port_counts(packed_models, tmp_path, ports, lanes):
    """The kernel takes any port count dividing ROW_GROUP (12) and 1 or 4 float lanes: builds with 1, 3
    and 6 ports (lm_head rows < ports x lanes; 1 or 2 sigmoid lanes) pass golden vectors laid out for them."""
    hdr = open(os.path.join(BUILD, "mmfree_board.h")).read()
    want = boards_get(BOARD)["weight_ports"]
    assert f"#define MMFREE_WEIGHT_PORTS {want}" in hdr
    hdr = hdr.replace(f"MMFREE_WEIGHT_PORTS {want}", f"MMFREE_WEIGHT_PORTS {ports}")
    hdr = re.sub(r"#define MMFREE_FLOAT_LANES \d+", f"#define MMFREE_FLOAT_LANES {lanes}", hdr)
    hdr = re.sub(r"#define MMFREE_SIGMOID_LANES \d+", f"#define MMFREE_SIGMOID_LANES {min(lanes, 2)}", hdr)
    (tmp_path / "mmfree_board.h").write_text(hdr)
    exe = str(tmp_path / "tb")
    cmd = ["g++", "-std=c++14", "-O1", "-Wall", "-Wextra", "-Werror", "-Wno-unknown-pragmas", "-Wno-uninitialized",
           "-Wno-maybe-uninitialized", "-ffp-contract=off", "-isystem", os.path.join(ROOT, "build", "ap_types"),
           "-I", str(tmp_path), "-I", os.path.join(ROOT, "hls", "include"), "-I", os.path.join(ROOT, "hls", "mmfree_kernel"),
           "-o", exe, KERNEL_CPP, os.path.join(ROOT, "hls", "tb", "tb_mmfree.cpp")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    files = [f for key in (("s70", "2bit"), ("s70", "base3"), ("s48", "base3"))
             for f, _ in vector_files(packed_models[key], str(tmp_path / f"{key[0]}-{key[1]}"), ports=ports)]
    r = run_tb(files, tb=exe)
    assert r.returncode == 0, r.stdout[-4000:]
    assert f"{ports} weight ports x 128 bits" in r.stdout


def _entries(data):
    """{name: (byte offset of the elements, count)} of a vector file's entries."""
    pos, entries = 8, {}
    while pos < len(data):
        (n,) = struct.unpack_from("<I", data, pos)
        name = data[pos + 4:pos + 4 + n].decode()
        dt, count = struct.unpack_from("<IQ", data, pos + 4 + n)
        start = pos + 4 + n + 12
        entries[name] = (start, count)
        pos = start + count * [4, 4, 1, 1, 2, 4][dt]
    return entries


def _bitflip_file(src, dst, packing, path, qkey="i.q", blob_off=0):
    """Copy a vector file with one weight code of the i projection flipped (row 0, a column whose
    activation `qkey` is nonzero), the i codes at byte blob_off of the "blob" entry (a layer blob at 0, or
    layer l's blob inside the arena at l * layer_stride)."""
    with open(src, "rb") as f:
        data = bytearray(f.read())
    entries = _entries(data)
    blob_at = entries["blob"][0] + blob_off
    qs, qn = entries["expect/" + qkey]
    q = np.frombuffer(bytes(data[qs:qs + qn]), np.int8)
    j = int(np.flatnonzero(q)[0])  # a column whose activation is nonzero: the product must change
    if packing == "2bit":
        data[blob_at + j // 4] ^= 1 << (2 * (j % 4))  # flips code 0 <-> +1 or -1 <-> invalid(0)
    else:
        b = data[blob_at + j // 5]
        digit = (b // 3 ** (j % 5)) % 3
        data[blob_at + j // 5] = b + 3 ** (j % 5) if digit < 2 else b - 3 ** (j % 5)
    with open(dst, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("packing", ["2bit", "base3"])
def test_mutation_one_weight_bit_fails(vectors, tmp_path, packing):
    files = vectors[("s70", packing)]
    layer0 = next(f for f, k in files if k == "layer")
    assert run_tb([layer0]).returncode == 0
    bad = str(tmp_path / "flipped.mmv")
    _bitflip_file(layer0, bad, packing, None)
    r = run_tb([bad])
    assert r.returncode == 1, r.stdout
    assert "i.acc" in r.stdout and "FAIL" in r.stdout


def test_mutation_one_lut_entry_fails(vectors, tmp_path, csim_build):
    """A copy of hls/ with one base-3 LUT entry altered, built and run: the testbench must fail."""
    work = tmp_path / "hls"
    shutil.copytree(os.path.join(ROOT, "hls"), work, ignore=shutil.ignore_patterns("build"))
    mv = work / "include" / "mmfree_matvec.h"
    text = mv.read_text()
    start = text.index("BASE3_LUT[256] = {")
    # byte 121 = 1+3+9+27+81: five zero codes, the commonest byte of a ternary matrix; make code 0 +1
    entries = re.findall(r"0x[0-9a-f]{3}", text[start:start + 4000])
    assert entries[121] == "0x000"
    body = text[start:]
    idx = [m.start() for m in re.finditer(r"0x[0-9a-f]{3}", body)][121]
    body = body[:idx] + "0x001" + body[idx + 5:]
    mv.write_text(text[:start] + body)
    exe = str(tmp_path / "tb_mutant")
    cmd = ["g++", "-std=c++14", "-O1", "-Wno-unknown-pragmas", "-ffp-contract=off",
           "-isystem", os.path.join(ROOT, "build", "ap_types"), "-I", BUILD, "-I", str(work / "include"),
           "-I", str(work / "mmfree_kernel"), "-o", exe, str(work / "mmfree_kernel" / "mmfree_kernel.cpp"),
           str(work / "tb" / "tb_mmfree.cpp")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    files = vectors[("s70", "base3")]
    layer0 = next(f for f, k in files if k == "layer")
    r = run_tb([layer0], tb=exe)
    assert r.returncode == 1, r.stdout
    assert "FAIL" in r.stdout
    # ... and the TOKEN vector (the LUT decodes every layer and the lm_head of the whole-token call)
    tok = next(f for f, k in files if k == "token")
    r = run_tb([tok], tb=exe)
    assert r.returncode == 1 and "FAIL" in r.stdout, r.stdout
    # the same mutant still passes 2-bit vectors: the LUT is the base-3 decoder only
    layer0_2bit = next(f for f, k in vectors[("s70", "2bit")] if k == "layer")
    assert run_tb([layer0_2bit], tb=exe).returncode == 0


@pytest.mark.parametrize("packing", ["2bit", "base3"])
def test_testbench_whole_token_vectors(vectors, packing):
    """BODY and TOKEN vectors (arena, [L, pad4(d)] state) pass for every shape: every layer's traced
    values layer-qualified, the state rows with their pad, the logits; BODY leaves OUT alone."""
    files = [(f, k) for key, fs in vectors.items() if key[1] == packing for f, k in fs if k in ("body", "token")]
    assert sorted(k for _, k in files) == ["body"] * len(SHAPES) + ["token"] * len(SHAPES)
    r = run_tb([f for f, _ in files])
    assert r.returncode == 0, r.stdout[-4000:]
    assert f"{len(files)} passed, 0 failed" in r.stdout
    # every value the vectors expect was compared: s200 (2 layers) TOKEN covers layers 0, 1 and the head
    tok = next(f for (key, fs) in vectors.items() if key == ("s200", packing) for f, k in fs if k == "token")
    with open(tok, "rb") as fh:
        names = set(_entries(fh.read()))
    for li in (0, 1):
        for k in ("i.q", "i.acc", "down.out", "forget", "state", "o_in", "z", "x"):
            assert f"expect/layers.{li}.{k}" in names, (li, k)
    assert {"expect/embed.x", "expect/lm_head.acc", "expect/x_out", "expect/h_out", "expect/out"} <= names
    line = next(ln for ln in r.stdout.splitlines() if tok in ln)
    assert "op 4" in line and "L 2" in line


@pytest.mark.parametrize("packing", ["2bit", "base3"])
def test_mutation_layer1_weight_in_arena_fails_token(vectors, tmp_path, packing):
    """One weight code of layer 1's blob inside the arena flipped: the TOKEN vector fails at layer 1
    (layer 0 and the embed still match)."""
    tok = next(f for f, k in vectors[("s70", packing)] if k == "token")
    assert run_tb([tok]).returncode == 0
    d, inter = SHAPES["s70"]["hidden_size"], SHAPES["s70"]["intermediate_size"]
    bad = str(tmp_path / "token-flipped.mmv")
    _bitflip_file(tok, bad, packing, None, qkey="layers.1.i.q", blob_off=csim.layer_stride(d, inter, packing))
    r = run_tb([bad])
    assert r.returncode == 1, r.stdout
    assert "FAIL" in r.stdout and "ERROR: layers.1.i.acc" in r.stdout, r.stdout
    assert "layers.0." not in r.stdout and "embed." not in r.stdout
    # the state buffer: row 1 (from float pad4(d)) differs, row 0 not. (The logits may or may not: a
    # small change of x can vanish in the lm_head's int8 quantization and RMS scale.)
    assert f"ERROR: h_out[{csim.pad4(d)}]" in r.stdout and "ERROR: h_out[0]" not in r.stdout


# ----------------------------------------------------------------------------------------------
# the shared library through csim.py (the emulator's path)
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["per-op", "token"])
@pytest.mark.parametrize("packing", ["2bit", "base3"])
@pytest.mark.parametrize("shape", ["s70", "s200"])
def test_library_matches_golden_over_tokens(csim_build, packed_models, shape, packing, mode):
    """Per op (EMBED, LAYER x L, HEAD calls) or one OP_TOKEN call on the arena: every intermediate of
    every layer equals the golden model's, in the same order."""
    path = packed_models[(shape, packing)]
    g = GoldenModel(path)
    m = csim.CsimModel(path)
    rec = csim.TraceRecorder()
    m.lib.set_trace(rec)
    try:
        for tok in (5, 1, 30, 5):
            tr = {}
            want = g.step(tok, trace=tr)
            rec.clear()
            got = m.step(tok) if mode == "per-op" else m.token(tok)
            assert np.array_equal(got.view(np.uint32), np.asarray(want, np.float32).view(np.uint32))
            # every call's traces arrive in order: split them by call through the embed "x"
            vals = rec.parts
            exp_layers = [layer_expect(tr, li) for li in range(g.n_layers)]
            # layer-level and projection traces of the last layer survive in rec.values (last write wins),
            # so compare per call using the raw parts
            calls = _split_calls(vals, g.n_layers)
            assert np.array_equal(calls[0]["x"], np.asarray(tr["embed"], np.float32).reshape(-1))
            for li in range(g.n_layers):
                for k, v in exp_layers[li].items():
                    got_v = calls[1 + li][k]
                    assert got_v.dtype == v.dtype and got_v.shape == v.shape, k
                    assert np.array_equal(got_v.view(np.uint8), v.view(np.uint8)), f"layer {li} {k}"
            for k, v in head_expect(tr).items():
                assert np.array_equal(calls[-1][k].view(np.uint8), v.view(np.uint8)), k
            if mode == "per-op":
                assert np.array_equal(m.h[0].array[:g.d], g.h[0])
            else:
                st = m.state.array.reshape(g.n_layers, csim.pad4(g.d))
                assert np.array_equal(st[:, :g.d], g.h) and not st[:, g.d:].any()
    finally:
        m.lib.set_trace(None)


@pytest.mark.parametrize("packing", ["2bit", "base3"])
@pytest.mark.parametrize("shape", ["s70", "s48", "s200"])
def test_library_body_then_token(csim_build, packed_models, shape, packing):
    """A prompt through OP_BODY calls (no logits written), its last token and decode through OP_TOKEN."""
    path = packed_models[(shape, packing)]
    g = GoldenModel(path)
    m = csim.CsimModel(path)
    ids = [7, 2, 9, 4]
    m.out.array[:] = -1.0
    for t in ids[:-1]:
        assert m.token(t, op=csim.OP_BODY) is None
    assert (m.out.array == -1.0).all()                # BODY never touches OUT
    assert np.array_equal(m.token(ids[-1]), g.forward(ids)[-1])
    for t in (1, 0):
        assert np.array_equal(m.token(t), g.step(t))
    m.reset()
    g.reset()
    assert np.array_equal(m.token(3), g.step(3))


def _split_calls(parts, n_layers):
    """TraceRecorder.parts in arrival order -> one dict per kernel call (embed, layers..., head)."""
    # rebuild arrival order: TraceRecorder keeps per key lists; recover call boundaries by counting
    # how many times each key appeared (layer keys appear n_layers times, embed "x" then layer "x")
    calls = [dict() for _ in range(n_layers + 2)]
    for key, lst in parts.items():
        if key.startswith("lm_head."):
            idxs = [n_layers + 1] * len(lst)
        elif key == "x":
            idxs = list(range(n_layers + 1))
        else:
            idxs = list(range(1, n_layers + 1))
        if key.endswith(".acc") or key.endswith(".out") or key.startswith("lm_head."):
            # chunked keys: group by call via restarts at offset 0
            groups, cur = [], []
            for off, a in lst:
                if off == 0 and cur:
                    groups.append(cur)
                    cur = []
                cur.append((off, a))
            groups.append(cur)
            idxs = idxs[:len(groups)] if not key.startswith("lm_head.") else [n_layers + 1]
            if key.startswith("lm_head.") and len(groups) > 1:
                groups = [[pa for gr in groups for pa in gr]]
            for ci, gr in zip(idxs, groups):
                n = max(o + a.size for o, a in gr)
                v = np.zeros(n, gr[0][1].dtype)
                for o, a in gr:
                    v[o:o + a.size] = a
                calls[ci][key] = v
            continue
        assert len(idxs) == len(lst), (key, len(idxs), len(lst))
        for ci, (off, a) in zip(idxs, lst):
            assert off == 0
            calls[ci][key] = a
    return calls


def test_library_errors_name_the_register(csim_build, packed_models):
    m = csim.CsimModel(packed_models[("s48", "2bit")])
    regs = m.regs(csim.OP_LAYER, blob=m.blobs[0], h=m.h[0])
    bad = regs.copy()
    bad[csim.REG["H_ADDR"] // 4] = 0x10  # nowhere
    with pytest.raises(csim.CsimError, match="H_ADDR"):
        m.lib.call(bad, m.mem.resolve)
    # a blob one byte too short for the dims: the W0 extent does not fit
    short = m.mem.alloc(csim.pack_layer_blob(m.packed, 0, ports=m.ports)[:-16])
    bad = m.regs(csim.OP_LAYER, blob=short, h=m.h[0])
    with pytest.raises(csim.CsimError, match="W0_ADDR"):
        m.lib.call(bad, m.mem.resolve)
    bad = regs.copy()
    bad[csim.REG["D"] // 4] = m.lib.config["max_d"] + 1
    with pytest.raises(csim.CsimError, match="outside this build"):
        m.lib.call(bad, m.mem.resolve)
    bad = m.regs(csim.OP_EMBED, token=m.vocab)
    with pytest.raises(csim.CsimError, match="token"):
        m.lib.call(bad, m.mem.resolve)


@pytest.mark.parametrize("op", ["BODY", "TOKEN"])
def test_library_whole_token_extents(csim_build, packed_models, op):
    """BODY/TOKEN resolve W with the arena extent and H with the [L, pad4(d)] state from LAYERS: one
    word short fails naming the register; exactly enough is fine; LAYERS outside 1..max is refused."""
    m = csim.CsimModel(packed_models[("s70", "base3")])
    code = getattr(csim, "OP_" + op)
    L, d = m.n_layers, m.d
    lay = csim.arena_layout(L, d, m.inter, m.vocab, "base3")
    need = lay["bytes"] if op == "TOKEN" else lay["layers"][-1] + csim.layer_layout(d, m.inter, "base3")["bytes"]
    arena = csim.pack_arena(m.packed, ports=m.ports)
    exact = m.mem.alloc(arena[:need])
    short = m.mem.alloc(arena[:need - 16])
    state = m.mem.alloc(csim.state_bytes(L, d) // 4, np.float32)
    m.lib.call(m.regs(code, token=1, blob=exact, h=state), m.mem.resolve)
    with pytest.raises(csim.CsimError, match="W0_ADDR"):
        m.lib.call(m.regs(code, token=1, blob=short, h=state), m.mem.resolve)
    short_h = m.mem.alloc(csim.state_bytes(L, d) // 4 - 4, np.float32)
    with pytest.raises(csim.CsimError, match="H_ADDR"):
        m.lib.call(m.regs(code, token=1, blob=exact, h=short_h), m.mem.resolve)
    for bad in (0, m.lib.config["max_layers"] + 1):
        with pytest.raises(csim.CsimError, match="LAYERS"):
            m.lib.call(m.regs(code, token=1, blob=exact, h=state, layers=bad), m.mem.resolve)
    with pytest.raises(csim.CsimError, match="token"):
        m.lib.call(m.regs(code, token=m.vocab, blob=exact, h=state), m.mem.resolve)
    with pytest.raises(csim.CsimError, match="unknown op"):
        m.lib.call(m.regs(csim.OP_IDENT + 1, token=1, blob=exact, h=state), m.mem.resolve)


def test_identity_block_written_by_every_call(csim_build, packed_models):
    """OP_IDENT resolves nothing (zero address registers are fine) and fills the identity block from the same
    header the hardware is built from; a compute op writes it too; the image reads 0 there before any call."""
    m = csim.CsimModel(packed_models[("s48", "2bit")])
    c = m.lib.config
    img = csim.regs_image({"OP": csim.OP_IDENT})
    assert not img[csim.REG["ID_MAGIC"] // 4:].any()
    m.lib.call(img, m.mem.resolve)
    word = {k: int(img[v // 4]) for k, v in csim.REG.items() if k.startswith("ID_")}
    assert word["ID_MAGIC"] == csim.REGS["ID_MAGIC"] == 0x4D4D4652
    assert word["ID_VERSION"] == csim.REGS["REGS_VERSION"]
    assert word["ID_CONFIG"] == c["ports"] | c["port_bits"] << 8 | c["float_lanes"] << 16 | c["sigmoid_lanes"] << 24
    assert (word["ID_MAX_D"], word["ID_MAX_INTER"], word["ID_MAX_VOCAB"], word["ID_MAX_LAYERS"]) == \
        (c["max_d"], c["max_inter"], c["max_vocab"], c["max_layers"])
    from mmfree import boards
    assert word["ID_CLOCK_KHZ"] == round(boards.get(c["board"])["clock_mhz"] * 1000)
    assert all(int(img[v // 4 + 1]) == 1 for k, v in csim.REG.items() if k.startswith("ID_"))   # ap_vld
    img2 = m.regs(csim.OP_EMBED, token=1)
    img2[csim.REG["ID_MAGIC"] // 4] = 0
    m.lib.call(img2, m.mem.resolve)
    assert int(img2[csim.REG["ID_MAGIC"] // 4]) == 0x4D4D4652


def test_weight_registers_used_per_build(csim_build, packed_models):
    """A build resolves W0..W(ports-1), each must hold the blob; registers past its ports are not read."""
    m = csim.CsimModel(packed_models[("s48", "2bit")])
    ports = m.lib.config["ports"]
    assert ports == 4 and csim.REGS["MAX_WEIGHT_PORT_REGS"] == 6 and csim.REGS["REGS_VERSION"] == 4
    regs = m.regs(csim.OP_LAYER, blob=m.blobs[0], h=m.h[0])
    for p in range(ports):
        bad = regs.copy()
        bad[csim.REG[f"W{p}_ADDR"] // 4] = 0x10
        with pytest.raises(csim.CsimError, match=f"W{p}_ADDR"):
            m.lib.call(bad, m.mem.resolve)
    # PYNQ-Z2 (2 ports): W2..W5 left at 0 are fine, W1 at 0 is not
    r = subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "hls"), "csim", "BOARD=pynq-z2", f"PY={sys.executable}"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    z = csim.CsimModel(packed_models[("s48", "2bit")], lib=csim.load("pynq-z2"))
    assert z.lib.config["ports"] == 2
    regs = z.regs(csim.OP_LAYER, blob=z.blobs[0], h=z.h[0])
    assert all(regs[csim.REG[f"W{p}_ADDR"] // 4] == 0 for p in range(2, 6))
    z.lib.call(regs, z.mem.resolve)
    regs[csim.REG["W1_ADDR"] // 4] = 0
    with pytest.raises(csim.CsimError, match="W1_ADDR"):
        z.lib.call(regs, z.mem.resolve)
    # the whole-token op on PYNQ-Z2 (2 x 64-bit ports: the arena's 4 KB stride is whole 8-byte words)
    g = GoldenModel(packed_models[("s48", "2bit")])
    assert np.array_equal(z.token(5), g.step(5))
    assert z.lib.config["max_layers"] == 24


def test_missing_library_says_make_csim(tmp_path):
    with pytest.raises(csim.CsimError, match="make csim"):
        csim.Csim(str(tmp_path / "nope.so"))


# ----------------------------------------------------------------------------------------------
# register map and layout
# ----------------------------------------------------------------------------------------------

def test_register_header_matches_pragmas():
    src = open(KERNEL_CPP).read()
    pragmas = dict(re.findall(r"#pragma HLS INTERFACE s_axilite port=(\w+) offset=(0x[0-9a-fA-F]+)", src))
    names = {"op": "OP", "d": "D", "inter": "INTER", "vocab": "VOCAB", "packing": "PACKING", "token": "TOKEN",
             "x": "X_ADDR", "h": "H_ADDR", "emb": "EMB_ADDR", "out": "OUT_ADDR", "layers": "LAYERS"}
    names.update({f"w{p}": f"W{p}_ADDR" for p in range(csim.REGS["MAX_WEIGHT_PORT_REGS"])})
    names.update({k.lower(): k for k in csim.REG if k.startswith("ID_")})   # the identity block (version 4)
    assert set(pragmas) == set(names)
    assert csim.REG["LAYERS"] == 0xB8 and csim.REG_SPAN == 0x100 and csim.REGS["REGS_VERSION"] == 4
    assert (csim.OP_BODY, csim.OP_TOKEN) == (3, 4)
    for port, reg in names.items():
        assert int(pragmas[port], 16) == csim.REG[reg], port
    # every top-level argument has an INTERFACE pragma; no two registers overlap
    offs = sorted((v, k) for k, v in csim.REG.items() if k not in ("SPAN",))
    ends = [(o + (8 if k.endswith("_ADDR") or k.startswith("ID_") else 4), k) for o, k in offs]  # ID_*: + ap_vld
    for (o, k), (e_prev, kp) in zip(offs[1:], ends[:-1]):
        assert o >= e_prev, (kp, k)
    assert ends[-1][0] <= csim.REG_SPAN


@pytest.mark.parametrize("d,inter,vocab", [(70, 150, 37), (1024, 2816, 32000), (2048, 5632, 32000), (48, 128, 101)])
@pytest.mark.parametrize("packing", ["2bit", "base3"])
def test_layout_python_equals_cpp(csim_build, d, inter, vocab, packing):
    lib = csim.load()
    lay = csim.layer_layout(d, inter, packing)
    pc = csim.PACKING_CODE[packing]
    assert lay["bytes"] == lib.layer_blob_bytes(d, inter, packing)
    assert lay["params"] == lib.lib.mmfree_layer_params_offset(d, inter, pc)
    for i, p in enumerate(csim.PROJ):
        assert lay["codes"][p][0] == lib.lib.mmfree_layer_codes_offset(i, d, inter, pc)
    for i, v in enumerate(csim.LAYER_VECS):
        assert lay["vec"][v] == lib.lib.mmfree_layer_vec_index(i, d, inter)
    hl = csim.head_layout(d, vocab, packing)
    assert hl["bytes"] == lib.head_blob_bytes(d, vocab, packing)
    assert hl["params"] == lib.lib.mmfree_head_params_offset(d, vocab, pc)
    assert csim.vec_bytes(d) == lib.lib.mmfree_vec_bytes(d)
    assert lay["params"] % 16 == 0 and hl["params"] % 16 == 0
    for L in (1, 3, 24):
        al = csim.arena_layout(L, d, inter, vocab, packing)
        assert al["stride"] == lib.layer_stride(d, inter, packing) and al["stride"] % 4096 == 0
        assert al["head"] == lib.arena_head_offset(L, d, inter, packing)
        assert al["bytes"] == lib.arena_bytes(L, d, inter, vocab, packing)
        assert csim.state_bytes(L, d) == lib.state_bytes(L, d)


def test_base3_lut_equals_packed_format():
    from mmfree import packed as pk
    text = open(os.path.join(ROOT, "hls", "include", "mmfree_matvec.h")).read()
    body = text[text.index("BASE3_LUT[256] = {"):]
    vals = [int(v, 16) for v in re.findall(r"0x[0-9a-f]{3}", body[:body.index("};")])]
    assert len(vals) == 256
    lut = pk.base3_lut()
    for b in range(256):
        codes = [((vals[b] >> (2 * j)) & 3) for j in range(5)]
        assert [c - 4 if c & 2 else c for c in codes] == list(lut[b]), b


def test_numerics_constants_equal_header():
    from mmfree import numerics as nx
    text = open(os.path.join(ROOT, "hls", "include", "mmfree_numerics.h")).read()

    def const(name):
        return np.float32(re.search(rf"\b{name}\s*=\s*([0-9.e+-]+)f?;", text).group(1).rstrip("f"))

    assert int(re.search(r"VEC_LANES = (\d+);", text).group(1)) == nx.VEC_LANES
    assert const("EPS") == nx.EPS and const("QMAX") == nx.QMAX and const("SIG_CLAMP") == nx.SIG_CLAMP
    assert const("LOG2E") == nx.LOG2E
    for i, c in enumerate(nx.EXP2_POLY):
        assert const(f"EXP2_C{i}") == c


def test_testbench_outputs_only_mode_for_cosim(packed_models, tmp_path):
    """What co-simulation runs: the testbench built with MMFREE_COSIM (m_axi depths of the vectors' shape from
    gen_vectors' mmfree_cosim.h, every buffer at least that deep) and --outputs-only (no C trace of the
    kernel body exists in cosim): every s70 call passes on x_out, h_out and logits alone; a flipped logit
    fails it."""
    import subprocess as sp
    ports = boards_get(BOARD)["weight_ports"]
    files = [f for f, _ in vector_files(packed_models[("s70", "base3")], str(tmp_path / "v"), tokens=(3,), ports=ports)]
    hdr = tmp_path / "mmfree_cosim.h"
    r = sp.run([sys.executable, os.path.join(ROOT, "hls", "scripts", "gen_vectors.py"), str(tmp_path / "g"),
                "--board", BOARD, "--depths", str(hdr)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    depths = dict(re.findall(r"#define (MMFREE_DEPTH_\w+) (\d+)", hdr.read_text()))
    assert set(depths) == {"MMFREE_DEPTH_W", "MMFREE_DEPTH_X", "MMFREE_DEPTH_H", "MMFREE_DEPTH_OUT", "MMFREE_DEPTH_EMB"}
    exe = str(tmp_path / "tb_cosim")
    cmd = ["g++", "-std=c++14", "-O1", "-Wall", "-Wextra", "-Werror", "-Wno-unknown-pragmas", "-Wno-uninitialized",
           "-Wno-maybe-uninitialized", "-ffp-contract=off", "-DMMFREE_COSIM", "-isystem",
           os.path.join(ROOT, "build", "ap_types"), "-I", str(tmp_path), "-I", BUILD,
           "-I", os.path.join(ROOT, "hls", "include"), "-I", os.path.join(ROOT, "hls", "mmfree_kernel"),
           "-o", exe, KERNEL_CPP, os.path.join(ROOT, "hls", "tb", "tb_mmfree.cpp")]
    r = sp.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = run_tb(["--outputs-only"] + files, tb=exe)
    assert r.returncode == 0, r.stdout[-4000:]
    assert f"{len(files)} passed, 0 failed" in r.stdout and "outputs only" in r.stdout
    token = [f for f in files if "token" in os.path.basename(f)][0]
    data = bytearray(open(token, "rb").read())
    start, count = _entries(data)["expect/out"]
    data[start] ^= 0x01  # one bit of the first expected logit
    bad = tmp_path / "bad.mmv"
    bad.write_bytes(bytes(data))
    r = run_tb(["--outputs-only", str(bad)], tb=exe)
    assert r.returncode == 1 and "out[0]" in r.stdout
