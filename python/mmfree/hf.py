"""Reading Hugging Face checkpoint folders in the released HGRNBit format, tensor by tensor.

A folder holds ``config.json`` and either ``model.safetensors`` or shards listed in
``model.safetensors.index.json``; tensors are bf16, fp16 or fp32. Nothing here needs torch.
"""

import json
import os
from typing import Dict, Iterator, List, Tuple

import numpy as np

from .config import HGRNBitConfig
from .errors import FormatError
from .safetensors_io import SafeTensorsFile


def checkpoint_files(folder: str) -> List[str]:
    """The safetensors files of a checkpoint folder, in shard order."""
    if not os.path.isdir(folder):
        raise FormatError(f"{folder}: not a checkpoint folder")
    single = os.path.join(folder, "model.safetensors")
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        try:
            with open(index, "r", encoding="utf-8") as f:
                wm = json.load(f)["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise FormatError(f"{index}: unreadable shard index ({e})") from None
        files = sorted(set(wm.values()))
        for fn in files:
            if not os.path.exists(os.path.join(folder, fn)):
                raise FormatError(f"{folder}: shard {fn} listed in the index is missing")
        return [os.path.join(folder, fn) for fn in files]
    if os.path.exists(single):
        return [single]
    raise FormatError(f"{folder}: no model.safetensors or model.safetensors.index.json "
                      "(only safetensors checkpoints are supported)")


def expected_shapes(cfg: HGRNBitConfig) -> Dict[str, Tuple[int, ...]]:
    """Every tensor of a released checkpoint, with its shape (the released HGRNBit format, docs/format.md)."""
    d, inter, L, V = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.vocab_size
    s = {"model.embeddings.weight": (V, d)}
    if cfg.use_lower_bound:
        s["model.lower_bounds"] = (L, d)
    for n in range(L):
        p = f"model.layers.{n}."
        s[p + "attn_norm.weight"] = (d,)
        for proj in ("i_proj", "f_proj", "g_proj", "o_proj"):
            s[p + f"attn.{proj}.weight"] = (d, d)
            s[p + f"attn.{proj}.norm.weight"] = (d,)
        s[p + "attn.g_norm.weight"] = (d,)
        s[p + "mlp_norm.weight"] = (d,)
        s[p + "mlp.gate_proj.weight"] = (2 * inter, d)
        s[p + "mlp.gate_proj.norm.weight"] = (d,)
        s[p + "mlp.down_proj.weight"] = (d, inter)
        s[p + "mlp.down_proj.norm.weight"] = (inter,)
    s["model.norm.weight"] = (d,)
    s["lm_head.weight"] = (V, d)
    s["lm_head.norm.weight"] = (d,)
    return s


class Checkpoint:
    """Random access to the tensors of a checkpoint folder (memory-mapped, one at a time)."""

    def __init__(self, folder: str):
        self.folder = folder
        self.config = HGRNBitConfig.from_json_file(os.path.join(folder, "config.json"))
        self.files = [SafeTensorsFile(p) for p in checkpoint_files(folder)]
        self._where: Dict[str, SafeTensorsFile] = {}
        for f in self.files:
            for name in f.names:
                self._where[name] = f
        exp = expected_shapes(self.config)
        missing = [k for k in exp if k not in self._where]
        if missing:
            raise FormatError(f"{folder}: checkpoint is missing {len(missing)} tensor(s), e.g. {missing[0]!r}")
        for k, shape in exp.items():
            dt, got = self._where[k].info(k)
            if tuple(got) != shape:
                raise FormatError(f"{folder}: tensor {k!r} has shape {list(got)}, config.json implies {list(shape)}")
            if dt not in ("BF16", "F16", "F32"):
                raise FormatError(f"{folder}: tensor {k!r} has dtype {dt}, expected BF16, F16 or F32")
        self.names = list(exp)
        tok = os.path.join(folder, "tokenizer.json")
        self.tokenizer_json = tok if os.path.exists(tok) else None

    def dtype(self, name: str) -> str:
        return self._where[name].info(name)[0]

    def raw(self, name: str) -> np.ndarray:
        """The stored array (bf16 as uint16 bits), memory-mapped."""
        return self._where[name].get(name)

    def f32(self, name: str) -> np.ndarray:
        return self._where[name].get_float32(name)


def iter_checkpoint_tensors(folder: str, framework: str = "np") -> Iterator[Tuple[str, object]]:
    """Yield (name, tensor) for every tensor of the checkpoint, as float32 numpy or torch."""
    ck = Checkpoint(folder)
    for f in ck.files:
        for name in f.names:
            a = f.get_float32(name)
            if framework == "pt":
                import torch
                yield name, torch.from_numpy(np.array(a, dtype=np.float32))
            else:
                yield name, a
