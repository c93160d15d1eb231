"""The C-simulation library under UBSan (float-to-int casts included): no report on valid models
nor on NaN/Inf/huge inputs, and emu == golden on all of them (issue 12)."""

import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT
from tinymodel import write_checkpoint

LIB = os.path.join(ROOT, "build", "csim", "kv260", "libmmfree_csim_ubsan.so")

PROBE = r'''
import sys
import numpy as np
sys.path.insert(0, sys.argv[3])
from mmfree import csim, emu, packed as pk
from mmfree.driver import Accelerator
from mmfree.golden import GoldenModel

m = pk.load(sys.argv[1])
acc = Accelerator(emu.Overlay(board="kv260", lib=csim.Csim(sys.argv[2])), m)
g = GoldenModel(m)
V = m.config.vocab_size
ids = [1, 7, 3, V - 1]
assert np.array_equal(acc.prefill(ids), g.forward(ids)[-1]), "valid prompt: emu != golden"
for t in (2, 5):
    assert np.array_equal(acc.step(t), g.step(t)), "valid decode: emu != golden"
assert np.array_equal(acc.state(), g.h)
# Past the loader and the driver's checks on purpose: NaN, infinities and huge values in the
# embedding rows the device reads, the same in the golden model's copy.
data = m._st._data.copy()
b, e = m._st.span("embeddings")
emb = data[b:e].view(np.uint16).reshape(V, m.config.hidden_size)
emb[5, ::3] = 0x7FC0      # NaN
emb[6, 0] = 0x7F80        # +inf
emb[7, 1] = 0xFF80        # -inf
emb[8, :] = 0x7F7F        # 3.4e38: squares overflow, rms factor 0
emb[9, 4] = 0xFFC1        # a NaN with payload
m._st._data = data
acc.emb[:] = emb
acc.emb.flush()
n = 0
with np.errstate(all="ignore"):
    for tok in (5, 6, 7, 8, 9):
        acc.reset()
        g.reset()
        a, r = acc.prefill([1, tok, 2]), g.forward([1, tok, 2])[-1]
        # equal, NaN positions included (IEEE 754 leaves the sign of a NaN unspecified)
        assert np.array_equal(a, r, equal_nan=True), tok
        assert np.array_equal(acc.state(), g.h, equal_nan=True), tok
        n += int(np.isnan(a).sum())
print("OK", n)
'''


@pytest.fixture(scope="module")
def ubsan_lib():
    r = subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "hls"), "ubsan", "BOARD=kv260",
                        f"PY={sys.executable}"], capture_output=True, text=True)
    if r.returncode:
        pytest.fail("make -C hls ubsan failed:\n" + r.stdout[-4000:] + r.stderr[-4000:])
    return LIB


def test_ubsan_flags_catch_float_to_int_casts(tmp_path, ubsan_lib):
    """The flags the target uses do report a NaN-to-int cast (GCC's plain -fsanitize=undefined would not)."""
    mk = open(os.path.join(ROOT, "hls", "Makefile")).read()
    flags = re.search(r"^UBSAN_FLAGS := (.*?)(?<!\\)$", mk, re.S | re.M).group(1).replace("\\\n", " ").split()
    assert "-fno-sanitize-recover=all" in flags and any("float-cast-overflow" in f for f in flags)
    src = tmp_path / "cast.cpp"
    src.write_text("#include <cmath>\nint main(int argc, char **) { volatile float f = NAN * argc; return (int)f; }\n")
    exe = str(tmp_path / "cast")
    subprocess.run(["g++"] + [f for f in flags if not f.startswith("-W")] + ["-o", exe, str(src)], check=True)
    r = subprocess.run([exe], capture_output=True, text=True)
    assert r.returncode != 0 and "runtime error" in r.stderr


@pytest.mark.parametrize("packing", ["2bit", "base3"])
def test_emu_under_ubsan_equals_golden_even_on_nan(tmp_path, ubsan_lib, packing):
    from mmfree.convert import convert
    ck = write_checkpoint(str(tmp_path / "ck"), seed=1)
    model = str(tmp_path / "m.safetensors")
    convert(ck, model, packing=packing, progress=False, log=None)
    r = subprocess.run([sys.executable, "-c", PROBE, model, ubsan_lib, os.path.join(ROOT, "python")],
                       capture_output=True, text=True, env=dict(os.environ, UBSAN_OPTIONS="print_stacktrace=1"))
    assert r.returncode == 0 and "runtime error" not in r.stderr, r.stdout[-2000:] + r.stderr[-4000:]
    assert r.stdout.startswith("OK") and int(r.stdout.split()[1]) > 0  # NaN did reach the logits
