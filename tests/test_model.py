"""The torch reference: checkpoint I/O in the released format, recurrent step == full forward."""

import json
import os

import pytest
import torch

from conftest import make_checkpoint
from mmfree.errors import ConfigError, FormatError
from mmfree.model import HGRNBit, activation_quant, hgrn_scan, round_half_away


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_from_pretrained_dtypes_roundtrip(tmp_path, dtype):
    ck = make_checkpoint(tmp_path / "ck", "tiny", dtype=dtype)
    cfg = json.load(open(os.path.join(ck, "config.json")))
    assert cfg["model_type"] == "hgrn_bit" and cfg["torch_dtype"] == dtype
    m = HGRNBit.from_pretrained(ck)
    m.save_pretrained(tmp_path / "again", dtype={"bfloat16": torch.bfloat16, "float16": torch.float16,
                                                  "float32": torch.float32}[dtype])
    m2 = HGRNBit.from_pretrained(tmp_path / "again")
    for (k, a), (_, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k


def test_sharded_checkpoint_and_dtype_key(tmp_path):
    one = make_checkpoint(tmp_path / "one", "odd", seed=3)
    many = make_checkpoint(tmp_path / "many", "odd", seed=3, shards=60_000, dtype_key="dtype")
    files = os.listdir(many)
    assert "model.safetensors.index.json" in files and sum(f.startswith("model-") for f in files) > 2
    assert "dtype" in json.load(open(os.path.join(many, "config.json")))
    a, b = HGRNBit.from_pretrained(one), HGRNBit.from_pretrained(many)
    ids = torch.randint(0, 301, (1, 7))
    with torch.no_grad():
        assert torch.equal(a(ids), b(ids))


def test_released_parameter_names(tmp_path):
    from safetensors import safe_open
    ck = make_checkpoint(tmp_path / "ck", "tiny")
    with safe_open(os.path.join(ck, "model.safetensors"), "pt") as f:
        names = set(f.keys())
        assert f.get_tensor("model.layers.0.mlp.gate_proj.weight").shape == (256, 48)
        assert f.get_tensor("model.layers.0.attn.i_proj.weight").dtype == torch.bfloat16
    for n in ["model.embeddings.weight", "model.lower_bounds", "model.layers.0.attn.i_proj.norm.weight",
              "model.layers.0.attn.g_norm.weight", "model.layers.0.mlp.down_proj.norm.weight",
              "model.norm.weight", "lm_head.weight", "lm_head.norm.weight"]:
        assert n in names


def test_step_matches_full_forward(tmp_path):
    m = HGRNBit.from_pretrained(make_checkpoint(tmp_path / "ck", "wide", seed=1))
    ids = torch.randint(0, 515, (2, 12))
    with torch.no_grad():
        full = m(ids)
        state = m.init_state(2)
        steps = []
        for t in range(ids.shape[1]):
            logits, state = m.step(ids[:, t], state)
            steps.append(logits)
        steps = torch.stack(steps, 1)
        # continuing a forward from a state equals the forward over the concatenation
        first, st = m(ids[:, :5], return_state=True)
        rest = m(ids[:, 5:], state=st)
    # the integer product path makes a token's logits independent of the batch shape: exact
    assert torch.equal(full, steps)
    assert torch.equal(full, torch.cat([first, rest], 1))


def test_parallel_scan_matches_sequential():
    torch.manual_seed(0)
    f, c, h0 = torch.rand(2, 37, 5), torch.randn(2, 37, 5), torch.randn(2, 5)
    a, la = hgrn_scan(f, c, h0, parallel=False)
    b, lb = hgrn_scan(f, c, h0, parallel=True)
    assert torch.allclose(a, b, atol=1e-5) and torch.allclose(la, lb, atol=1e-5)
    h = h0
    for t in range(37):
        h = f[:, t] * h + c[:, t]
    assert torch.allclose(la, h, atol=1e-6)


def test_round_half_away_and_activation_quant():
    v = torch.tensor([0.5, -0.5, 1.5, -2.5, 0.49999997, 2.4999998, 3.0])
    assert round_half_away(v).tolist() == [1.0, -1.0, 2.0, -3.0, 0.0, 2.0, 3.0]
    x = torch.tensor([[1.0, -2.0, 0.5, 0.0]])
    s = 127 / 2.0
    assert torch.allclose(activation_quant(x) * s, torch.tensor([[64.0, -127.0, 32.0, 0.0]]))


def test_bad_checkpoints(tmp_path):
    ck = make_checkpoint(tmp_path / "ck", "tiny")
    cfg_path = os.path.join(ck, "config.json")
    cfg = json.load(open(cfg_path))
    json.dump(dict(cfg, hidden_size=64), open(cfg_path, "w"))
    with pytest.raises(FormatError, match="shape"):
        HGRNBit.from_pretrained(ck)
    json.dump(dict(cfg, model_type="llama"), open(cfg_path, "w"))
    with pytest.raises(ConfigError, match="model_type"):
        HGRNBit.from_pretrained(ck)
    json.dump(dict(cfg, use_short_conv=True), open(cfg_path, "w"))
    with pytest.raises(ConfigError, match="use_short_conv"):
        HGRNBit.from_pretrained(ck)
    os.remove(os.path.join(ck, "model.safetensors"))
    json.dump(cfg, open(cfg_path, "w"))
    with pytest.raises(FormatError, match="no model.safetensors"):
        HGRNBit.from_pretrained(ck)


def test_ternary_cache_never_stale(tmp_path):
    """Eval after an optimizer step sees the new weights, even when an update skips the version counter."""
    m = HGRNBit.from_pretrained(make_checkpoint(tmp_path / "ck", "tiny"))
    ids = torch.randint(0, 101, (1, 6))
    with torch.no_grad():
        before = m(ids)
    m.train()
    with torch.no_grad():
        m.lm_head.weight.data.mul_(-1)  # in place through .data: the parameter's version does not change
        during = m(ids, parallel_scan=False)  # training mode: codes computed afresh, no cache
    m.eval()
    with torch.no_grad():
        after = m(ids)
    assert torch.equal(during, after) and not torch.equal(before, after)
