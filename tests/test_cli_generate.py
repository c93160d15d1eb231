"""`mmfree generate`: streaming, --json, --prompt-ids, backend choice, tokenizer choice, and bad model
files ending in one line and exit 2 (no traceback)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

BOARD = "kv260"



def run(argv, capsys):
    from mmfree.cli import main
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_json_emu_equals_golden(csim_lib, packed_cache, capsys):
    _, path = packed_cache("odd", "base3")
    common = ["generate", "--model", path, "--prompt-ids", "1,2,3", "--max-new-tokens", "6", "--json",
              "--temperature", "0.8", "--top-k", "30", "--top-p", "0.9", "--seed", "4", "--no-eos"]
    rc, out, err = run(common + ["--backend", "emu"], capsys)
    assert rc == 0, err
    a = json.loads(out)
    rc, out, _ = run(common + ["--backend", "golden"], capsys)
    b = json.loads(out)
    assert a["tokens"] == b["tokens"] and len(a["tokens"]) == 6
    assert a["text"] == b["text"]
    for k in ("prefill_tokens_per_s", "decode_tokens_per_s"):
        assert a[k] > 0
    assert a["backend"] == "emu" and b["backend"] == "golden"


def test_stream_default_backend_and_rates(csim_lib, packed_cache, capsys, monkeypatch):
    _, path = packed_cache("tiny", "2bit")
    monkeypatch.setenv("MMFREE_PYNQ", "0")
    rc, out, err = run(["generate", "--model", path, "--prompt-ids", "5,6", "--max-new-tokens", "4",
                        "--greedy"], capsys)
    assert rc == 0, err
    assert "backend emu" in err and "byte-level fallback" in err
    last = out.strip().splitlines()[-1]
    assert "prefill: 2 tokens" in last and "decode: 4 new tokens" in last and "tokens/s" in last


def test_text_prompt_with_model_tokenizer(csim_lib, tmp_path, capsys):
    from test_generate import _word_tokenizer_json

    from mmfree.generate import make_random_model
    path = make_random_model(str(tmp_path / "tok.safetensors"),
                             dict(vocab_size=64, hidden_size=32, num_hidden_layers=1, intermediate_size=64),
                             tokenizer_json=_word_tokenizer_json())
    rc, out, err = run(["generate", "--model", path, "--backend", "emu", "--prompt", "hello world",
                        "--max-new-tokens", "3", "--json", "--no-eos"], capsys)
    assert rc == 0, err
    assert "tokenizer.json from the model file" in err
    r = json.loads(out)
    assert r["prompt_tokens"] == 2 and len(r["tokens"]) == 3
    rc, out, err = run(["generate", "--model", path, "--backend", "golden", "--prompt", "hello", "--byte-tokenizer",
                        "--max-new-tokens", "1"], capsys)
    assert rc == 2 and "vocabulary has 64 ids" in err   # bytes of "hello" exceed a 64-id vocabulary


def test_default_model_missing(capsys, monkeypatch, tmp_path):
    from mmfree import generate as gen
    monkeypatch.setattr(gen, "BUNDLED_MODEL", str(tmp_path / "bundled.safetensors"))
    monkeypatch.setattr(gen, "DEMO_MODEL", str(tmp_path / "random.safetensors"))
    rc, out, err = run(["generate", "--backend", "golden", "--prompt-ids", "1"], capsys)
    assert rc == 2 and "bundled model" in err and "--make-random-model" in err
    assert len(err.strip().splitlines()) == 1


def test_bad_arguments(packed_cache, capsys):
    _, path = packed_cache("tiny", "2bit")
    for extra, msg in ((["--prompt-ids", "1,x"], "comma-separated"), (["--prompt-ids", "999"], "vocabulary"),
                       (["--prompt-ids", "1", "--top-p", "2"], "top-p"),
                       (["--prompt-ids", "1", "--backend", "torch"], "folder")):
        rc, out, err = run(["generate", "--model", path, "--backend", "golden"] + extra, capsys)
        assert rc == 2 and msg in err, (extra, err)
        assert "Traceback" not in err


def _corrupt_files(path, tmp_path):
    data = open(path, "rb").read()
    files = {}
    files["garbage"] = b"this is not a model at all"
    files["truncated"] = data[: len(data) // 2]
    files["empty"] = b""
    flipped = bytearray(data)
    flipped[10] ^= 0xFF      # inside the JSON header
    files["header"] = bytes(flipped)
    out = {}
    for k, v in files.items():
        p = tmp_path / f"{k}.safetensors"
        p.write_bytes(v)
        out[k] = str(p)
    # a valid safetensors file that is not an mmfree packed model
    import numpy as np
    from safetensors.numpy import save_file
    p = tmp_path / "other.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(p))
    out["other"] = str(p)
    return out


@pytest.mark.parametrize("backend", ["emu", "golden"])
def test_corrupt_model_files_one_line_exit_2(csim_lib, packed_cache, tmp_path, backend):
    _, path = packed_cache("tiny", "base3")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))
    files = _corrupt_files(path, tmp_path)
    files["missing"] = str(tmp_path / "nope.safetensors")
    files["folder"] = str(tmp_path)
    for kind, f in files.items():
        r = subprocess.run([sys.executable, "-m", "mmfree.cli", "generate", "--model", f, "--backend", backend,
                            "--prompt-ids", "1"], capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 2, (kind, r.stderr)
        assert "Traceback" not in r.stderr, (kind, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mmfree generate: error:"), (kind, r.stderr)
        assert r.stdout == ""


def test_demo_model_maker(tmp_path):
    from mmfree import packed as pk
    from mmfree.generate import make_random_model
    p = make_random_model(str(tmp_path / "d" / "m.safetensors"),
                          dict(vocab_size=300, hidden_size=32, num_hidden_layers=1, intermediate_size=64))
    m = pk.load(p)
    assert m.config.vocab_size == 300 and m.tokenizer_json is None
    assert shutil.which("make")
