"""mmfree bench (python/mmfree/bench.py) and the driver term of the performance model (perf.py):
kernel calls per token as counted, driver time per call = driver time per token / calls per token."""

import json

import numpy as np
import pytest



@pytest.mark.parametrize("arena", [True, False])
def test_bench_backend_counts_calls(csim_lib, packed_cache, arena):
    from mmfree import driver as drv
    from mmfree import emu
    from mmfree.backends import AcceleratorBackend
    from mmfree.bench import bench_backend

    _, path = packed_cache("wide", "2bit")
    ol = emu.Overlay(board="kv260", lib=csim_lib)
    b = AcceleratorBackend("emu", drv.Accelerator(ol, path, arena=arena), ol)
    r = bench_backend(b, prompt_len=3, new_tokens=4, warmup=0, repeats=1)
    b.close()
    L = b.acc.n_layers
    if arena:
        assert r["driver_mode"] == "token" and r["kernel_calls_per_token"] == 1
        assert set(r["kernel_call_s"]) == {"BODY", "TOKEN"}
        assert r["kernel_call_s"]["TOKEN"]["n"] == 4 + 1 and r["kernel_call_s"]["BODY"]["n"] == 2   # prefill + decode
        assert r["layer_s"] is None
    else:
        assert r["driver_mode"] == "per-op" and r["kernel_calls_per_token"] == L + 2
        assert set(r["kernel_call_s"]) == {"EMBED", "LAYER", "HEAD"}
    assert r["driver_s_per_call"] == pytest.approx(r["driver_s_per_token"]["median"] / r["kernel_calls_per_token"])
    json.dumps(r)


def test_perf_driver_term_one_call_per_token(tmp_path):
    from mmfree import perf

    one = perf.project_size("kv260", "1.3B", "base3", driver_s_per_call=1e-4)
    assert one["kernel_calls_per_token"] == 1 and one["driver_s"] == pytest.approx(1e-4)
    per_op = perf.project_size("kv260", "1.3B", "base3", driver_s_per_call=1e-4, calls_per_token=None)
    assert per_op["kernel_calls_per_token"] == 26 and per_op["driver_s"] == pytest.approx(26e-4)
    assert per_op["stream_fraction"] < one["stream_fraction"] <= one["stream_fraction_kernel_only"]
    none = perf.project_size("kv260", "1.3B", "base3", driver_s_per_call=0.0)
    assert none["stream_fraction"] == pytest.approx(none["stream_fraction_kernel_only"])
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"driver_s_per_call": 3e-5}))
    assert perf.driver_seconds_per_call(str(p)) == 3e-5
    assert np.isfinite(perf.project_size("kv260", "370M")["stream_fraction"])
