"""The census of the HLS code (python/mmfree/census.py, hls/census/): what it reports for the kernel as it
is, and that it catches each defect the v1 review found, shown by mutating a copy of hls/.

Each mutation is one realistic edit; the unmutated code passes the same check.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "python"))

from mmfree import boards as B  # noqa: E402
from mmfree import census  # noqa: E402


@pytest.fixture(scope="module")
def kv260():
    return census.census("kv260")


def mutated(tmp_path, board, path, old, new, count=1):
    """Census of a copy of hls/ with `old` replaced by `new` in hls/<path>."""
    hls = tmp_path / "hls"
    shutil.copytree(census.HLS, hls)
    f = hls / path
    text = f.read_text()
    assert text.count(old) == count, (path, old)
    f.write_text(text.replace(old, new))
    return census.census(board, hls_dir=str(hls), out_dir=str(tmp_path / "out"), write=False)


def loop(res, name):
    rows = [lp for lp in res["loops"] if lp["name"].startswith(name + " ")]
    assert rows, name
    return rows


def test_kernel_v2_reaches_every_declared_ii_and_streams_in_bursts(kv260):
    for lp in kv260["loops"]:
        assert lp["reachable_ii"] == lp["declared_ii"], lp
    weights = [m for m in kv260["maxi"] if m["bundle"].startswith("gmem_w")]
    assert {m["bundle"] for m in weights} == {f"gmem_w{p}" for p in range(B.get("kv260")["weight_ports"])}
    assert all(m["burst_eligible"] for m in weights), weights
    assert census.weight_stream_bursts(kv260)
    # one instance of each building block: one matvec loop, one quantize loop, one sigmoid pass
    for name in ("ternary_matvec", "quantize_mul", "gate_pass", "norm_scan"):
        assert len(loop(kv260, name)) == 1, name


def test_json_has_the_documented_keys(kv260):
    path = os.path.join(census.BUILD, "kv260.json")
    data = json.load(open(path))
    for k in ("lut", "ff", "dsp", "bram36", "uram"):
        assert set(data["resources"][k]) == {"used", "available", "percent"}
    for lp in data["loops"]:
        assert {"name", "declared_ii", "reachable_ii", "limited_by"} <= set(lp)
    for m in data["maxi"]:
        assert {"bundle", "loop", "burst_eligible", "reason"} <= set(m)


def test_operator_counts_follow_the_lanes(kv260):
    """Operators per iteration times the unroll: the sigmoid pass issues 2 fdiv per lane (two sigmoids),
    the quantize pass its compares per lane, the matvec 64 + 80 ternary lanes per port."""
    b = B.get("kv260")
    gp = loop(kv260, "gate_pass")[0]["ops"]
    assert gp["fdiv"] == 2 * b["sigmoid_lanes"]
    mv = loop(kv260, "ternary_matvec")[0]["ops"]
    assert mv["lane.2bit"] == b["weight_ports"] * b["port_bits"] // 2
    assert mv["lane.base3"] == b["weight_ports"] * b["port_bits"] // 8 * 5
    assert mv["fmul"] == mv["sitofp"] == b["weight_ports"]   # the scale at the row end, one per port
    q = loop(kv260, "quantize_mul")[0]["ops"]
    assert q["fptosi"] == 2 * b["float_lanes"]


def test_mutation_dropped_partition_raises_ii(tmp_path, kv260):
    """Drop the banks of the i product's output: the matvec row end writes 4 rows per cycle into one
    dual-port bank, so the matvec cannot reach II=1."""
    assert loop(kv260, "ternary_matvec")[0]["reachable_ii"] == 1
    res = mutated(tmp_path, "kv260", "mmfree_kernel/mmfree_kernel.cpp",
                  "#pragma HLS ARRAY_PARTITION variable=yi_buf type=cyclic factor=MMFREE_Y_BANKS dim=1\n", "")
    mv = loop(res, "ternary_matvec")[0]
    assert mv["reachable_ii"] > mv["declared_ii"] == 1
    assert mv["limited_by"].startswith("yi_buf")


def test_mutation_conditional_weight_read_loses_bursts(tmp_path, kv260):
    """Skip the reads of the padding rows (the v1 kernel's `if (i < n[P])`): the weight reads become
    conditional and no longer burst-eligible; the lint flags the same line."""
    res = mutated(tmp_path, "kv260", "include/mmfree_matvec.h",
                  "    const word_t wd = w[addr];\n",
                  "    word_t wd = 0;\n    if (row < rows) wd = w[addr];\n")
    bad = [m for m in res["maxi"] if m["bundle"].startswith("gmem_w") and not m["burst_eligible"]]
    assert bad and all(m["reason"].startswith("conditional") for m in bad)
    assert not census.weight_stream_bursts(res)
    sys.path.insert(0, HERE)
    import test_hls_subset as lint
    text = open(tmp_path / "hls" / "include" / "mmfree_matvec.h").read()
    assert any("accessed under a condition" in v for v in lint.violations(text))


def test_mutation_divider_per_lane_exceeds_the_board(tmp_path):
    """Widen the sigmoid pass to 4 lanes on PYNQ-Z2 and give it one more divide per lane: the estimate no
    longer fits the 7z020."""
    before = census.census("pynq-z2", write=False)
    assert all(before["resources"][k]["percent"] <= 100 for k in ("lut", "ff", "dsp", "bram36"))
    hls = tmp_path / "hls"
    shutil.copytree(census.HLS, hls)
    k = hls / "mmfree_kernel" / "mmfree_kernel.cpp"
    k.write_text(k.read_text().replace("gate_pass<SIGMOID_LANES>", "gate_pass<4>"))
    v = hls / "include" / "mmfree_vector.h"
    text = v.read_text()
    old = "                const vf sq = ov * ov;\n"
    assert text.count(old) == 1
    v.write_text(text.replace(old, "                const vf sq = (ov * ov) / (ov + 1.0f);\n"))
    res = census.census("pynq-z2", hls_dir=str(hls), out_dir=str(tmp_path / "out"), write=False)
    gp = loop(res, "gate_pass")[0]["ops"]
    assert gp["fdiv"] == 3 * 4
    over = [k for k in ("lut", "ff", "dsp") if res["resources"][k]["percent"] > 100]
    assert over, res["resources"]


def test_make_census_prints_and_writes(tmp_path):
    r = subprocess.run(["make", "-s", "census", "BOARD=pynq-z2"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resources" in r.stdout and "II decl" in r.stdout and "burst" in r.stdout
    assert os.path.exists(os.path.join(census.BUILD, "pynq-z2.json"))
