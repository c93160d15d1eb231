"""Tiny checkpoints and packed files made with numpy only (fast: for the fault and fuzz tests)."""

import hashlib
import json
import os

import numpy as np

from mmfree.config import HGRNBitConfig
from mmfree.hf import expected_shapes
from mmfree.safetensors_io import f32_to_bf16, write_file

TINY = dict(vocab_size=40, hidden_size=16, num_hidden_layers=2, intermediate_size=32)


def write_checkpoint(folder, shape=None, seed=0, dtype="BF16", tokenizer=True, shards=False):
    """A random checkpoint in the released format (config.json, model.safetensors or two shards +
    index, tokenizer.json) under ``folder``; returns the folder."""
    os.makedirs(folder, exist_ok=True)
    cfg = HGRNBitConfig(**(shape or TINY))
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shp in expected_shapes(cfg).items():
        if name.endswith("norm.weight"):
            a = rng.uniform(0.5, 1.5, size=shp)
        elif name == "model.lower_bounds":
            a = rng.normal(size=shp)
        else:
            a = rng.normal(scale=0.02, size=shp)
        a = a.astype(np.float32)
        tensors[name] = f32_to_bf16(a) if dtype == "BF16" else a
    d = cfg.to_dict()
    d["torch_dtype"] = "bfloat16" if dtype == "BF16" else "float32"
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as f:
        json.dump(d, f)

    def save(fn, ts):
        specs = {k: v for k, v in ts.items()}
        from mmfree.safetensors_io import StreamingWriter
        w = StreamingWriter(os.path.join(folder, fn),
                            [(k, "BF16" if dtype == "BF16" else v.dtype, v.shape) for k, v in specs.items()],
                            {"format": "pt"})
        for k, v in specs.items():
            w.write(k, v)
        w.close()

    if shards:
        names = list(tensors)
        half = len(names) // 2
        parts = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
        wm = {}
        for fn, ns in parts.items():
            save(fn, {n: tensors[n] for n in ns})
            wm.update({n: fn for n in ns})
        with open(os.path.join(folder, "model.safetensors.index.json"), "w", encoding="utf-8") as f:
            json.dump({"metadata": {}, "weight_map": wm}, f)
    else:
        save("model.safetensors", tensors)
    if tokenizer:
        tok = {"version": "1.0", "model": {"type": "BPE", "vocab": {f"t{i}": i for i in range(cfg.vocab_size)},
                                           "merges": []}}
        with open(os.path.join(folder, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(tok, f)
    return str(folder)


def tree_digest(folder) -> dict:
    """{relative path: sha256} of every file under folder (to prove nothing changed)."""
    out = {}
    for root, _, files in os.walk(folder):
        for fn in files:
            p = os.path.join(root, fn)
            with open(p, "rb") as f:
                out[os.path.relpath(p, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


def read_header(path):
    import struct
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def write_raw(path, header, data: bytes, pad=True):
    """A safetensors file from a header dict (or raw header bytes) and data bytes, no checks."""
    import struct
    hb = header if isinstance(header, bytes) else json.dumps(header).encode()
    if pad:
        hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + data)
    return str(path)
