"""scripts/gpu_baseline.py on CPU with the tiny shape (no energy): JSON fields and modes."""

import importlib.util
import json
import os

import pytest

torch = pytest.importorskip("torch")

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "scripts", "gpu_baseline.py")


def load():
    spec = importlib.util.spec_from_file_location("gpu_baseline", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_baseline_tiny_cpu(tmp_path):
    gb = load()
    out = tmp_path / "b.json"
    argv = ["--tiny", "--device", "cpu", "--out", str(out), "--modes", "ref,cached", "--dtypes", "fp32",
            "--warmup", "1", "--repeats", "2", "--seconds", "0.01", "--min-tokens", "2"]
    gb.main(argv)
    d = json.loads(out.read_text())
    assert d["command"].endswith(" ".join(argv)) and d["device"] == "cpu" and d["sensor"] is None
    assert d["torch"] == torch.__version__
    assert [(r["config"], r["dtype"], r["mode"]) for r in d["results"]] == [("tiny", "fp32", "ref"),
                                                                        ("tiny", "fp32", "cached")]
    for r in d["results"]:
        assert r["shape"]["hidden_size"] == 64 and len(r["repeats"]) == 2
        assert r["tokens_per_s"] > 0 and r["ms_per_token"] == pytest.approx(1000 / r["tokens_per_s"])
        assert "j_per_token_net" not in r


def test_cached_mode_matches_reference_fp32():
    gb = load()
    from mmfree.config import HGRNBitConfig
    from mmfree.model import HGRNBit

    torch.manual_seed(0)
    m = HGRNBit(HGRNBitConfig(**gb.SHAPES["tiny"])).eval()
    ids = torch.tensor([5])
    a, _ = m.step(ids, m.init_state(1))
    gb.make_cached(m, torch.float32)
    b, _ = m.step(ids, m.init_state(1))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
