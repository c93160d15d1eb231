"""A small, strict safetensors reader and streaming writer in numpy (no torch).

Why not ``safetensors.numpy``: it cannot read bf16 (the released checkpoints' dtype), it loads a
whole file at once, and its errors do not say which file or tensor is wrong. This module reads
one tensor at a time through a memory map, checks every offset against the file size, and
writes a file tensor by tensor so that a conversion never holds the whole output in memory.

Format (https://github.com/huggingface/safetensors): u64 little-endian header length N, N bytes
of JSON ``{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}``,
then the data; offsets are relative to the end of the header.
"""

import json
import os
import struct
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from .errors import FormatError

# bf16 has no numpy dtype: it is read as uint16 bits (see bf16_to_f32).
DTYPES = {
    "BOOL": np.dtype(np.bool_), "U8": np.dtype(np.uint8), "I8": np.dtype(np.int8),
    "U16": np.dtype("<u2"), "I16": np.dtype("<i2"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
    "U32": np.dtype("<u4"), "I32": np.dtype("<i4"), "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"), "I64": np.dtype("<i8"), "F64": np.dtype("<f8"),
}
_NP_TO_ST = {np.dtype(np.uint8): "U8", np.dtype(np.int8): "I8", np.dtype("<u2"): "U16",
             np.dtype("<i2"): "I16", np.dtype("<f2"): "F16", np.dtype("<u4"): "U32",
             np.dtype("<i4"): "I32", np.dtype("<f4"): "F32", np.dtype("<i8"): "I64",
             np.dtype("<f8"): "F64", np.dtype("<u8"): "U64", np.dtype(np.bool_): "BOOL"}
MAX_HEADER = 100 * 1024 * 1024


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """bf16 bit patterns (uint16) -> float32, exactly."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns, round to nearest even (NaN kept NaN)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = np.isnan(x)
    return np.where(nan, (u >> 16) | 0x40, rounded).astype(np.uint16)


class SafeTensorsFile:
    """A checked view of one .safetensors file: ``names``, ``info(name)``, ``get(name)``, ``metadata``."""

    def __init__(self, path: str):
        self.path = path
        try:
            size = os.path.getsize(path)
        except OSError as e:
            raise FormatError(f"{path}: cannot open ({e.strerror})") from None
        if size < 8:
            raise FormatError(f"{path}: truncated: {size} bytes, shorter than the 8-byte header length")
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > MAX_HEADER or 8 + n > size:
                raise FormatError(f"{path}: truncated or not a safetensors file "
                                  f"(header says {n} bytes, file has {size})")
            raw = f.read(n)
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FormatError(f"{path}: corrupt safetensors header ({e})") from None
        if not isinstance(header, dict):
            raise FormatError(f"{path}: corrupt safetensors header (not a JSON object)")
        self.metadata: Dict[str, str] = header.pop("__metadata__", None) or {}
        self.data_start = 8 + n
        self.file_size = size
        self._info: Dict[str, Tuple[str, Tuple[int, ...], int, int]] = {}
        for name, t in header.items():
            try:
                dt, shape, (b, e) = t["dtype"], tuple(int(s) for s in t["shape"]), t["data_offsets"]
            except (KeyError, TypeError, ValueError):
                raise FormatError(f"{path}: corrupt header entry for tensor {name!r}") from None
            if dt not in DTYPES:
                raise FormatError(f"{path}: tensor {name!r} has unknown dtype {dt!r}")
            if any(s < 0 for s in shape):
                raise FormatError(f"{path}: tensor {name!r} has a negative dimension {shape}")
            nbytes = int(np.prod(shape, dtype=np.int64)) * DTYPES[dt].itemsize
            if e - b != nbytes or b < 0:
                raise FormatError(f"{path}: tensor {name!r}: shape {list(shape)} x {dt} needs {nbytes} bytes, "
                                  f"header gives {e - b}")
            if self.data_start + e > size:
                raise FormatError(f"{path}: truncated: tensor {name!r} ends at byte {self.data_start + e}, "
                                  f"file has {size}")
            self._info[name] = (dt, shape, b, e)
        self._mm: Optional[np.memmap] = None

    @property
    def names(self) -> List[str]:
        return list(self._info)

    def __contains__(self, name: str) -> bool:
        return name in self._info

    def info(self, name: str) -> Tuple[str, Tuple[int, ...]]:
        dt, shape, _, _ = self._info[name]
        return dt, shape

    def get(self, name: str, copy: bool = False) -> np.ndarray:
        """The tensor as a numpy array (a read-only memory-mapped view unless ``copy``)."""
        if name not in self._info:
            raise FormatError(f"{self.path}: missing tensor {name!r}")
        dt, shape, b, e = self._info[name]
        if self._mm is None:
            self._mm = np.memmap(self.path, dtype=np.uint8, mode="r")
        arr = self._mm[self.data_start + b:self.data_start + e].view(DTYPES[dt]).reshape(shape)
        return np.array(arr) if copy else arr

    def get_float32(self, name: str) -> np.ndarray:
        """The tensor converted to float32 (bf16 and fp16 included)."""
        dt, _ = self.info(name)
        a = self.get(name)
        if dt == "BF16":
            return bf16_to_f32(a)
        return np.asarray(a, dtype=np.float32)


class StreamingWriter:
    """Write a safetensors file tensor by tensor, in the order of ``specs``.

    ``specs`` is a list of (name, numpy dtype or "BF16", shape); the header (with offsets) is
    written first, then each ``write(name, array)`` appends the data, checked against its spec.
    """

    def __init__(self, path: str, specs: List[Tuple[str, object, Tuple[int, ...]]], metadata: Dict[str, str]):
        self.path = path
        header, off = {}, 0
        self._order = []
        for name, dt, shape in specs:
            st = dt if dt == "BF16" else _NP_TO_ST[np.dtype(dt)]
            nbytes = int(np.prod(shape, dtype=np.int64)) * DTYPES[st].itemsize
            header[name] = {"dtype": st, "shape": [int(s) for s in shape], "data_offsets": [off, off + nbytes]}
            self._order.append((name, st, tuple(int(s) for s in shape), nbytes))
            off += nbytes
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
        raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
        raw += b" " * (-len(raw) % 8)
        self._f = open(path + ".partial", "wb")
        self._f.write(struct.pack("<Q", len(raw)))
        self._f.write(raw)
        self._next = 0
        self.total_bytes = 8 + len(raw) + off

    def write(self, name: str, arr: np.ndarray):
        exp_name, st, shape, nbytes = self._order[self._next]
        if name != exp_name:
            raise ValueError(f"writer expected tensor {exp_name!r} next, got {name!r}")
        arr = np.ascontiguousarray(arr)
        if tuple(arr.shape) != shape or arr.nbytes != nbytes or DTYPES[st] != arr.dtype:
            raise ValueError(f"tensor {name!r}: got {arr.dtype} {arr.shape}, spec says {st} {shape}")
        self._f.write(arr.tobytes())
        self._next += 1

    def close(self):
        if self._next != len(self._order):
            self._f.close()
            os.remove(self.path + ".partial")
            raise ValueError(f"only {self._next} of {len(self._order)} tensors written")
        self._f.close()
        os.replace(self.path + ".partial", self.path)

    def abort(self):
        if not self._f.closed:
            self._f.close()
        if os.path.exists(self.path + ".partial"):
            os.remove(self.path + ".partial")


def write_file(path: str, tensors: Dict[str, np.ndarray], metadata: Dict[str, str]):
    """Write a whole dict of numpy arrays (small files: tests, tools)."""
    w = StreamingWriter(path, [(k, v.dtype, v.shape) for k, v in tensors.items()], metadata)
    try:
        for k, v in tensors.items():
            w.write(k, v)
        w.close()
    except BaseException:
        w.abort()
        raise


def iter_files(paths: Iterable[str]) -> Iterator[SafeTensorsFile]:
    for p in paths:
        yield SafeTensorsFile(p)
