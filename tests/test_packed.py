"""Packed format: pack/unpack round trips, conversion, and every kind of bad file."""

import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from mmfree import packed as pk
from mmfree.convert import lower_bound_table
from mmfree.errors import FormatError
from mmfree.safetensors_io import SafeTensorsFile

try:  # host only: the board-side run (numpy 1.x, make board-compat) has no torch
    import torch
    from mmfree.model import HGRNBit, lower_bound_table as torch_lb, weight_alpha, weight_codes
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="compares with the torch reference (host only)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("packing", pk.PACKINGS)
@pytest.mark.parametrize("k", [1, 5, 63, 64, 65, 79, 80, 81, 200, 333])
def test_pack_unpack_roundtrip(packing, k):
    rng = np.random.default_rng(k)
    codes = rng.integers(-1, 2, size=(7, k)).astype(np.int8)
    p = pk.pack(codes, packing)
    assert p.shape == (7, pk.row_bytes(k, packing)) and p.shape[1] % 16 == 0
    assert np.array_equal(pk.unpack(p, k, packing), codes)
    pk.validate_codes(p, k, packing, "t", "mem")  # padding is zero, no invalid byte


def test_packing_bit_layout():
    # 2bit: code j of a byte in bits [2j+1:2j], two's complement; base3: sum (c_j + 1) 3^j
    codes = np.array([[1, -1, 0, 1, -1]], np.int8)
    p2 = pk.pack(codes, "2bit")
    assert p2[0, 0] == 0b01_00_11_01 and p2[0, 1] == 0b11
    p3 = pk.pack(codes, "base3")
    assert p3[0, 0] == 2 * 1 + 0 * 3 + 1 * 9 + 2 * 27 + 0 * 81
    assert p3[0, 1] == 121  # five zero codes of padding
    assert 8 * pk.row_bytes(80 * 13, "base3") / (80 * 13) == 1.6


@pytest.mark.parametrize("packing", pk.PACKINGS)
def test_invalid_codes_rejected(packing):
    p = pk.pack(np.zeros((2, 10), np.int8), packing)
    bad = p.copy()
    bad[1, 0] = 0b10 if packing == "2bit" else 250
    with pytest.raises(FormatError, match="row 1"):
        pk.validate_codes(bad, 10, packing, "x", "mem")
    pad = p.copy()
    pad[0, 5] = 0b01 if packing == "2bit" else 122  # a +1 beyond column 10
    with pytest.raises(FormatError, match="padding"):
        pk.validate_codes(pad, 10, packing, "x", "mem")


@needs_torch
@pytest.mark.parametrize("packing", pk.PACKINGS)
def test_conversion_matches_torch_quantization(packed_cache, packing):
    ck, path = packed_cache("odd", packing)
    m = HGRNBit.from_pretrained(ck)
    p = pk.load(path)
    layer = m.model.layers[1]
    for proj, mod in [("i", layer.attn.i_proj), ("gate_up", layer.mlp.gate_proj), ("down", layer.mlp.down_proj)]:
        w = mod.weight.detach()
        k = w.shape[1]
        assert p.tensor(f"layers.1.{proj}.alpha")[0] == weight_alpha(w).item()
        codes = pk.unpack(p.tensor(f"layers.1.{proj}.codes"), k, packing)
        assert np.array_equal(codes, weight_codes(w).numpy().astype(np.int8))
    # folded gains: block norm * BitLinear norm
    want = (layer.attn_norm.weight * layer.attn.f_proj.norm.weight).detach().numpy()
    assert np.array_equal(p.tensor("layers.1.f.gain"), want)
    assert np.array_equal(p.tensor("layers.1.o.gain"), layer.attn.o_proj.norm.weight.detach().numpy())
    assert np.allclose(p.tensor("lower_bounds"), torch_lb(m.model.lower_bounds).detach().numpy(), atol=1e-6)
    assert np.all(p.tensor("lower_bounds")[0] == 0)
    emb = m.model.embeddings.weight.detach().to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(p.tensor("embeddings"), emb)


def test_lower_bound_table_rows():
    raw = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    lb = lower_bound_table(raw)
    assert np.all(lb[0] == 0) and np.all(np.diff(lb, axis=0) > 0) and np.all(lb < 1)


@needs_torch
def test_convert_cli_reports_bits_and_size(tmp_path):
    from conftest import make_checkpoint
    ck = make_checkpoint(tmp_path / "ck", "tiny")
    out = tmp_path / "m.safetensors"
    r = subprocess.run([sys.executable, "-m", "mmfree.cli", "convert", ck, "-o", str(out), "--packing", "2bit"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "bits/weight" in r.stdout and "MB" in r.stdout
    info = subprocess.run([sys.executable, "-m", "mmfree.cli", "info", str(out), "--json"],
                          capture_output=True, text=True, cwd=ROOT)
    d = json.loads(info.stdout)
    assert d["packing"] == "2bit" and d["hidden_size"] == 48 and d["file_bytes"] == os.path.getsize(out)
    # rows of 48 or 128 codes padded to 64-code words: i,f,g,o 4*48 rows, gate_up 256, lm_head 101 rows of
    # 16 bytes; down 48 rows of 32 bytes; over 4*48*48 + 256*48 + 48*128 + 101*48 weights
    bits = 8 * (16 * (4 * 48 + 256 + 101) + 32 * 48)
    assert d["bits_per_weight"] == pytest.approx(bits / (4 * 48 * 48 + 256 * 48 + 48 * 128 + 101 * 48), abs=1e-4)


# --------------------------------------------------------------------------------- bad files
def _rewrite_header(src, dst, edit):
    raw = open(src, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    edit(header)
    hb = json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + raw[8 + n:])


@pytest.fixture
def good_file(packed_cache):
    return packed_cache("tiny", "base3")[1]


def test_truncated_file(good_file, tmp_path):
    raw = open(good_file, "rb").read()
    for cut in (4, 100, len(raw) - 7):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(raw[:cut])
        with pytest.raises(FormatError, match="truncated"):
            pk.load(str(bad))


def test_wrong_version(good_file, tmp_path):
    bad = str(tmp_path / "v.safetensors")
    _rewrite_header(good_file, bad, lambda h: h["__metadata__"].update(format_version="99"))
    with pytest.raises(FormatError, match="version 99"):
        pk.load(bad)


def test_not_a_packed_model(good_file, tmp_path):
    bad = str(tmp_path / "n.safetensors")
    _rewrite_header(good_file, bad, lambda h: h["__metadata__"].pop("format"))
    with pytest.raises(FormatError, match="not an mmfree packed model"):
        pk.load(bad)


def test_missing_tensor(good_file, tmp_path):
    bad = str(tmp_path / "m.safetensors")
    _rewrite_header(good_file, bad, lambda h: h.update({"layers.0.g_norm2": h.pop("layers.0.g_norm")}))
    with pytest.raises(FormatError, match="missing tensor 'layers.0.g_norm'"):
        pk.load(bad)
    gap = str(tmp_path / "gap.safetensors")  # dropping the entry leaves its bytes unclaimed: a gap
    _rewrite_header(good_file, gap, lambda h: h.pop("layers.0.g_norm"))
    with pytest.raises(FormatError, match="gap of 192 bytes"):
        pk.load(gap)


def test_tampered_shape(good_file, tmp_path):
    bad = str(tmp_path / "s.safetensors")

    def same_bytes_other_shape(h):
        n, rb = h["lm_head.codes"]["shape"]
        h["lm_head.codes"]["shape"] = [rb, n]
    _rewrite_header(good_file, bad, same_bytes_other_shape)
    with pytest.raises(FormatError, match="'lm_head.codes' has shape"):
        pk.load(bad)
    bad2 = str(tmp_path / "s2.safetensors")
    _rewrite_header(good_file, bad2, lambda h: h["final_norm"].update(shape=[7]))
    with pytest.raises(FormatError, match="'final_norm'.*bytes"):
        pk.load(bad2)


def test_corrupt_header_and_bad_codes(good_file, tmp_path):
    raw = bytearray(open(good_file, "rb").read())
    garbled = bytearray(raw)
    garbled[10:20] = b"\xff" * 10
    (tmp_path / "g.safetensors").write_bytes(bytes(garbled))
    with pytest.raises(FormatError, match="corrupt"):
        pk.load(str(tmp_path / "g.safetensors"))
    st = SafeTensorsFile(good_file)
    _, _, b, _ = st._info["layers.0.down.codes"]
    raw[st.data_start + b] = 255
    (tmp_path / "c.safetensors").write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="layers.0.down.codes.*242"):
        pk.load(str(tmp_path / "c.safetensors"))


def test_cli_bad_file_is_one_line_error(good_file, tmp_path):
    bad = tmp_path / "t.safetensors"
    bad.write_bytes(open(good_file, "rb").read()[:1000])
    r = subprocess.run([sys.executable, "-m", "mmfree.cli", "info", str(bad)], capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "truncated" in r.stderr and str(bad) in r.stderr
