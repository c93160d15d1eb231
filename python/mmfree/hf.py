"""Reading Hugging Face checkpoint folders in the released HGRNBit format, tensor by tensor.

A folder holds ``config.json`` and either ``model.safetensors`` or shards listed in
``model.safetensors.index.json``; tensors are bf16, fp16 or fp32. Nothing here needs torch.
"""

import os
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from .config import HGRNBitConfig
from .errors import FormatError
from .safetensors_io import SafeTensorsFile, strict_json_loads


MAX_INDEX_BYTES = 64 << 20


def _plain_file_name(fn) -> bool:
    """A shard name from an index: a bare file name inside the folder (no folders, no '..')."""
    return (isinstance(fn, str) and fn not in ("", ".", "..") and "/" not in fn and "\\" not in fn
            and "\0" not in fn and os.sep not in fn and not os.path.isabs(fn))


def _read_json_bounded(path: str, max_bytes: int, unreadable: str, too_large: str, parse_context: str):
    """(raw bytes, parsed JSON) of a file of at most ``max_bytes``; FormatError naming the file otherwise."""
    try:
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
    except OSError as e:
        raise FormatError(f"{path}: {unreadable} ({e.strerror})") from None
    if len(raw) > max_bytes:
        raise FormatError(f"{path}: larger than {max_bytes} bytes, {too_large}")
    return raw, strict_json_loads(raw, parse_context)


def read_index(folder: str) -> Dict[str, str]:
    """The ``weight_map`` of ``model.safetensors.index.json``: tensor name -> shard file name,
    checked (an object of strings; every shard a plain file name inside the folder)."""
    index = os.path.join(folder, "model.safetensors.index.json")
    _, data = _read_json_bounded(index, MAX_INDEX_BYTES, "unreadable shard index", "not a shard index",
                                 f"{index}: unreadable shard index")
    wm = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(wm, dict):
        raise FormatError(f"{index}: unreadable shard index (no weight_map object)")
    for name, fn in wm.items():
        if not isinstance(fn, str):
            raise FormatError(f"{index}: weight_map[{name!r}] is not a file name: {fn!r}")
        if not _plain_file_name(fn):
            raise FormatError(f"{index}: weight_map[{name!r}] names {fn!r}, which is not a plain file name in "
                              "the checkpoint folder (shards must lie in the folder itself)")
    return wm


def _folder(folder) -> str:
    try:
        folder = os.fspath(folder)
    except TypeError:
        raise FormatError(f"{folder!r}: not a checkpoint folder") from None
    if not isinstance(folder, str) or "\0" in folder or not os.path.isdir(folder):
        raise FormatError(f"{folder}: not a checkpoint folder")
    return folder


def checkpoint_files(folder: str) -> List[str]:
    """The safetensors files of a checkpoint folder, in shard order."""
    folder = _folder(folder)
    single = os.path.join(folder, "model.safetensors")
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        files = sorted(set(read_index(folder).values()))
        if not files:
            raise FormatError(f"{index}: the shard index lists no files")
        for fn in files:
            if not os.path.isfile(os.path.join(folder, fn)):
                raise FormatError(f"{folder}: shard {fn} listed in the index is missing")
        return [os.path.join(folder, fn) for fn in files]
    if os.path.exists(single):
        return [single]
    raise FormatError(f"{folder}: no model.safetensors or model.safetensors.index.json "
                      "(only safetensors checkpoints are supported)")


def expected_count(cfg: HGRNBitConfig) -> int:
    """Number of tensors a released checkpoint of this config holds (O(1))."""
    return 1 + (1 if cfg.use_lower_bound else 0) + 14 * cfg.num_hidden_layers + 3


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
    """Random access to the tensors of a checkpoint folder (read one at a time, checked).

    Every input is validated before it is used: config.json by type and range, the shard index
    (plain file names inside the folder), each safetensors file by the strict reader, the tensor
    count against the config before any per-layer loop, no tensor in two shards, every expected
    tensor present with its shape and a float dtype. ``input_files`` lists every file read.
    """

    def __init__(self, folder: str):
        folder = _folder(folder)
        self.folder = folder
        self.config = HGRNBitConfig.from_json_file(os.path.join(folder, "config.json"))
        paths = checkpoint_files(folder)
        self.files = [SafeTensorsFile(p) for p in paths]
        index = os.path.join(folder, "model.safetensors.index.json")
        wm = read_index(folder) if os.path.exists(index) else None
        self._where: Dict[str, SafeTensorsFile] = {}
        for f in self.files:
            for name in f.names:
                if name in self._where:
                    raise FormatError(f"{folder}: tensor {name!r} appears in two files "
                                      f"({os.path.basename(self._where[name].path)} and {os.path.basename(f.path)})")
                self._where[name] = f
        if wm is not None:
            for name, fn in wm.items():
                f = self._where.get(name)
                if f is None or os.path.basename(f.path) != fn:
                    raise FormatError(f"{index}: weight_map puts {name!r} in {fn}, which does not hold it")
        need = expected_count(self.config)
        if need > len(self._where):  # before any loop over the config's layers
            raise FormatError(f"{folder}: config.json ({self.config.num_hidden_layers} layers) implies {need} "
                              f"tensors, the checkpoint holds {len(self._where)}")
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
        self.input_files = [os.path.join(folder, "config.json")] + ([index] if wm is not None else []) + paths + \
            ([tok] if self.tokenizer_json else [])

    def read_tokenizer(self, max_bytes: int) -> Optional[str]:
        """tokenizer.json's text, checked: at most ``max_bytes``, UTF-8, a JSON object (None if absent)."""
        if not self.tokenizer_json:
            return None
        p = self.tokenizer_json
        raw, obj = _read_json_bounded(p, max_bytes, "cannot read", "too large to embed in a packed model", p)
        if not isinstance(obj, dict):
            raise FormatError(f"{p}: not a tokenizer (expected a JSON object)")
        return raw.decode("utf-8")

    def dtype(self, name: str) -> str:
        return self._where[name].info(name)[0]

    def raw(self, name: str) -> np.ndarray:
        """The stored array (bf16 as uint16 bits), read from the file."""
        return self._where[name].get(name)

    def f32(self, name: str) -> np.ndarray:
        return self._where[name].get_float32(name)

    def f32_finite(self, name: str) -> np.ndarray:
        """``f32(name)``, refusing NaN or infinity (FormatError naming the tensor)."""
        a = self.f32(name)
        if not np.all(np.isfinite(a)):
            raise FormatError(f"{self._where[name].path}: tensor {name!r} holds NaN or infinity")
        return a


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
