"""A small, strict safetensors reader and streaming writer in numpy (no torch, no memory maps).

Why not ``safetensors.numpy``: it cannot read bf16 (the released checkpoints' dtype), it loads a
whole file at once, and its errors do not say which file or tensor is wrong. This module reads
one tensor at a time (or the whole data region at once, ``preload``), validates the header
against a schema before using any of it, and writes a file tensor by tensor, atomically, so
that a conversion never holds the whole output in memory and never leaves a half-written file.

Format (https://github.com/huggingface/safetensors): u64 little-endian header length N, N bytes
of JSON ``{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}``,
then the data; offsets are relative to the end of the header.

What the reader enforces (a file that breaks any rule is a :class:`FormatError` naming the file):

- the header length fits the file and ``MAX_HEADER``; the header is UTF-8 JSON starting with
  ``{``, without duplicate keys, ``NaN``/``Infinity`` literals, integers longer than 20 digits or
  nesting deeper than the parser allows;
- each entry is an object with exactly ``dtype`` (a known name), ``shape`` (a list of at most
  ``MAX_DIMS`` non-negative integers, booleans and floats refused) and ``data_offsets`` (two
  integers, begin <= end); ``end - begin`` equals the shape's element count times the dtype size;
- sorted by offset, the tensors are contiguous, do not overlap and cover the data region exactly
  (no gap, no trailing bytes), as the specification requires;
- ``__metadata__``, when present, maps strings to strings;
- the file is a regular file, and it has not changed size or identity when data is read later
  (reads are plain ``pread``s into fresh arrays: a file truncated under a running process gives
  an error, never a SIGBUS from a memory map).

Sizes are bounded by the file's own size before anything is allocated or looped over.
"""

import hashlib
import json
import os
import stat
import struct
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from .errors import FormatError, OutputError
from .fileio import new_temp

# bf16 has no numpy dtype: it is read as uint16 bits (see bf16_to_f32).
DTYPES = {
    "BOOL": np.dtype(np.bool_), "U8": np.dtype(np.uint8), "I8": np.dtype(np.int8),
    "U16": np.dtype("<u2"), "I16": np.dtype("<i2"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
    "U32": np.dtype("<u4"), "I32": np.dtype("<i4"), "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"), "I64": np.dtype("<i8"), "F64": np.dtype("<f8"),
}
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
_NP_TO_ST = {np.dtype(np.uint8): "U8", np.dtype(np.int8): "I8", np.dtype("<u2"): "U16",
             np.dtype("<i2"): "I16", np.dtype("<f2"): "F16", np.dtype("<u4"): "U32",
             np.dtype("<i4"): "I32", np.dtype("<f4"): "F32", np.dtype("<i8"): "I64",
             np.dtype("<f8"): "F64", np.dtype("<u8"): "U64", np.dtype(np.bool_): "BOOL"}
MAX_HEADER = 100 * 1024 * 1024  # what the reference reader accepts
MAX_DIMS = 8
MAX_INT_DIGITS = 20             # any offset or dimension of a real file has fewer digits
_ENTRY_KEYS = {"dtype", "shape", "data_offsets"}
INTEGRITY_PREFIX = "sha256:"


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(f"duplicate key {k!r}")
        out[k] = v
    return out


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"integer with {len(text)} digits")
    return int(text)


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def strict_json_loads(text, what: str):
    """``json.loads`` that raises FormatError (naming ``what``) for every kind of bad input:
    invalid UTF-8 or JSON, duplicate keys, NaN/Infinity literals, huge integers, deep nesting."""
    try:
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8")
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_int=_bounded_int,
                          parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
        raise FormatError(f"{what}: not valid JSON ({e})") from None
    except RecursionError:
        raise FormatError(f"{what}: JSON nested too deeply") from None
    except MemoryError:  # pragma: no cover - bounded by MAX_HEADER
        raise FormatError(f"{what}: JSON too large to parse") from None


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def canonical_header_bytes(header: dict, integrity_key: str) -> bytes:
    """The header as hashed for the integrity check: every entry and metadata value except the
    integrity value itself, as sorted, compact, ASCII JSON."""
    h = dict(header)
    md = dict(h.get("__metadata__") or {})
    md.pop(integrity_key, None)
    h["__metadata__"] = md
    return json.dumps(h, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """bf16 bit patterns (uint16) -> float32, exactly."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns, round to nearest even (NaN kept NaN)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = np.isnan(x)
    return np.where(nan, (u >> 16) | 0x40, rounded).astype(np.uint16)


def _open_regular(path: str):
    """Open ``path`` for reading; FormatError unless it is a readable regular file."""
    try:
        st = os.stat(path)
    except (OSError, ValueError, TypeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise FormatError(f"{path}: cannot open ({reason})") from None
    if stat.S_ISDIR(st.st_mode):
        raise FormatError(f"{path}: is a directory, not a safetensors file")
    if not stat.S_ISREG(st.st_mode):
        raise FormatError(f"{path}: not a regular file (a device, pipe or socket)")
    try:
        f = open(path, "rb")
    except OSError as e:
        raise FormatError(f"{path}: cannot open ({e.strerror})") from None
    fst = os.fstat(f.fileno())
    if not stat.S_ISREG(fst.st_mode):  # pragma: no cover - swapped between stat and open
        f.close()
        raise FormatError(f"{path}: not a regular file")
    return f, fst


def _read_exact(f, offset: int, nbytes: int, path: str, what: str) -> np.ndarray:
    buf = np.empty(nbytes, dtype=np.uint8)
    mv = memoryview(buf)
    got = 0
    try:
        while got < nbytes:
            n = os.preadv(f.fileno(), [mv[got:]], offset + got) if hasattr(os, "preadv") else None
            if n is None:  # pragma: no cover - platforms without preadv
                f.seek(offset + got)
                n = f.readinto(mv[got:])
            if not n:
                break
            got += n
    except OSError as e:
        raise FormatError(f"{path}: read error in {what} ({e.strerror})") from None
    if got != nbytes:
        raise FormatError(f"{path}: truncated while reading {what} (the file changed or shrank: "
                          f"{got} of {nbytes} bytes)")
    return buf


class SafeTensorsFile:
    """A checked safetensors file: ``names``, ``info(name)``, ``get(name)``, ``metadata``.

    ``get`` returns a fresh array read from the file (or, after ``preload()``, a read-only view of
    the data region held in memory); nothing is memory-mapped.
    """

    def __init__(self, path: str):
        try:
            path = os.fspath(path)
        except TypeError:
            raise FormatError(f"{path!r}: not a file path") from None
        self.path = path
        f, fst = _open_regular(path)
        try:
            size = fst.st_size
            self._ident = (fst.st_dev, fst.st_ino, size)
            if size < 8:
                raise FormatError(f"{path}: truncated: {size} bytes, shorter than the 8-byte header length")
            (n,) = struct.unpack("<Q", bytes(_read_exact(f, 0, 8, path, "the header length")))
            if n > MAX_HEADER or 8 + n > size:
                raise FormatError(f"{path}: truncated or not a safetensors file "
                                  f"(header says {n} bytes, file has {size})")
            raw = bytes(_read_exact(f, 8, n, path, "the header"))
        finally:
            f.close()
        if not raw.startswith(b"{"):
            raise FormatError(f"{path}: corrupt safetensors header (does not start with '{{')")
        header = strict_json_loads(raw, f"{path}: corrupt safetensors header")
        if not isinstance(header, dict):
            raise FormatError(f"{path}: corrupt safetensors header (not a JSON object)")
        self.header = header
        self.data_start = 8 + n
        self.data_len = size - self.data_start
        self.file_size = size
        md = header.get("__metadata__", {})
        if md is None:
            md = {}
        if not isinstance(md, dict) or not all(isinstance(v, str) for v in md.values()):
            raise FormatError(f"{path}: corrupt safetensors header (__metadata__ must map strings to strings)")
        self.metadata: Dict[str, str] = dict(md)
        self._info: Dict[str, Tuple[str, Tuple[int, ...], int, int]] = {}
        for name, t in header.items():
            if name == "__metadata__":
                continue
            self._info[name] = self._check_entry(name, t)
        spans = sorted((b, e, name) for name, (_, _, b, e) in self._info.items())
        pos = 0
        for b, e, name in spans:
            if b != pos:
                what = "overlaps the tensor before it" if b < pos else f"leaves a gap of {b - pos} bytes before it"
                raise FormatError(f"{path}: tensor {name!r} at data offset {b} {what} "
                                  "(tensors must be contiguous and must not overlap)")
            pos = e
        if pos != self.data_len:
            if pos < self.data_len:
                raise FormatError(f"{path}: {self.data_len - pos} trailing bytes after the last tensor "
                                  "(the tensors must cover the data exactly)")
            raise FormatError(f"{path}: truncated: the tensors end at data byte {pos}, "
                              f"the file holds {self.data_len} data bytes")
        self._data: Optional[np.ndarray] = None

    def _check_entry(self, name: str, t) -> Tuple[str, Tuple[int, ...], int, int]:
        path = self.path
        if not isinstance(t, dict) or set(t) != _ENTRY_KEYS:
            raise FormatError(f"{path}: corrupt header entry for tensor {name!r} (expected an object with "
                              "exactly dtype, shape and data_offsets)")
        dt, shape, offs = t["dtype"], t["shape"], t["data_offsets"]
        if not isinstance(dt, str) or dt not in DTYPES:
            raise FormatError(f"{path}: tensor {name!r} has unknown dtype {dt!r}")
        if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(_is_int(s) for s in shape):
            raise FormatError(f"{path}: tensor {name!r} has an invalid shape {shape!r} "
                              f"(a list of at most {MAX_DIMS} integers)")
        if any(s < 0 for s in shape):
            raise FormatError(f"{path}: tensor {name!r} has a negative dimension {shape}")
        if any(s > self.data_len for s in shape):
            raise FormatError(f"{path}: tensor {name!r}: dimension in {shape} exceeds the file's "
                              f"{self.data_len} data bytes")
        if not isinstance(offs, list) or len(offs) != 2 or not all(_is_int(o) for o in offs):
            raise FormatError(f"{path}: tensor {name!r} has invalid data_offsets {offs!r} (two integers)")
        b, e = offs
        count = 1
        for s in shape:
            count *= s
        nbytes = count * DTYPES[dt].itemsize
        if b < 0 or e < b:
            raise FormatError(f"{path}: tensor {name!r} has invalid data_offsets [{b}, {e}]")
        if e - b != nbytes:
            raise FormatError(f"{path}: tensor {name!r}: shape {list(shape)} x {dt} needs {nbytes} bytes, "
                              f"header gives {e - b}")
        if e > self.data_len:
            raise FormatError(f"{path}: truncated: tensor {name!r} ends at byte {self.data_start + e}, "
                              f"file has {self.file_size}")
        return dt, tuple(shape), b, e

    @property
    def names(self) -> List[str]:
        return list(self._info)

    def __contains__(self, name: str) -> bool:
        return name in self._info

    def info(self, name: str) -> Tuple[str, Tuple[int, ...]]:
        if name not in self._info:
            raise FormatError(f"{self.path}: missing tensor {name!r}")
        dt, shape, _, _ = self._info[name]
        return dt, shape

    def span(self, name: str) -> Tuple[int, int]:
        """(begin, end) of a tensor in the data region."""
        _, _, b, e = self._info[name]
        return b, e

    def _open_same(self):
        f, fst = _open_regular(self.path)
        if (fst.st_dev, fst.st_ino, fst.st_size) != self._ident:
            f.close()
            raise FormatError(f"{self.path}: the file changed after its header was read (replaced, "
                              "truncated or extended); open it again")
        return f

    def preload(self) -> np.ndarray:
        """Read the whole data region into memory once (one read); later ``get`` calls are views."""
        if self._data is None:
            f = self._open_same()
            try:
                data = _read_exact(f, self.data_start, self.data_len, self.path, "the tensor data")
            finally:
                f.close()
            data.flags.writeable = False
            self._data = data
        return self._data

    def get(self, name: str, copy: bool = False) -> np.ndarray:
        """The tensor as a numpy array: read from the file (a view of the preloaded data region
        after ``preload()``, read-only unless ``copy``)."""
        if name not in self._info:
            raise FormatError(f"{self.path}: missing tensor {name!r}")
        dt, shape, b, e = self._info[name]
        if self._data is not None:
            raw = self._data[b:e]
            if copy:
                raw = raw.copy()
        else:
            f = self._open_same()
            try:
                raw = _read_exact(f, self.data_start + b, e - b, self.path, f"tensor {name!r}")
            finally:
                f.close()
        return raw.view(DTYPES[dt]).reshape(shape)

    def get_float32(self, name: str) -> np.ndarray:
        """The tensor converted to float32 (bf16 and fp16 included)."""
        dt, _ = self.info(name)
        a = self.get(name)
        if dt == "BF16":
            return bf16_to_f32(a)
        return np.asarray(a, dtype=np.float32)

    def integrity_digest(self, integrity_key: str) -> str:
        """``sha256:<hex>`` over the canonical header (without ``integrity_key``) and the data."""
        h = hashlib.sha256(canonical_header_bytes(self.header, integrity_key))
        h.update(b"\0")
        h.update(memoryview(self.preload()))
        return INTEGRITY_PREFIX + h.hexdigest()


def _describe(e: OSError) -> str:
    return e.strerror or str(e)


class StreamingWriter:
    """Write a safetensors file tensor by tensor, in the order of ``specs``, atomically.

    ``specs`` is a list of (name, numpy dtype or "BF16", shape); the header (with offsets) is
    written first, then each ``write(name, array)`` appends the data, checked against its spec.
    Everything goes to a unique temporary file in the target's folder (``tempfile.mkstemp``: no
    fixed name, never through a symlink); ``close(validate)`` syncs it, runs ``validate(tmp_path)``
    and renames it over ``path``. ``abort()`` (and any failure in ``close``) removes the temporary
    file, so an existing ``path`` stays untouched. Write errors (a full disk) are OutputError.

    ``integrity_key``: a metadata key that receives ``sha256:<hex>`` of the canonical header and
    the data (see ``SafeTensorsFile.integrity_digest``), patched into the header at ``close``.
    """

    def __init__(self, path: str, specs: List[Tuple[str, object, Tuple[int, ...]]], metadata: Dict[str, str],
                 integrity_key: Optional[str] = None):
        path = os.fspath(path)
        self.path = path
        header, off = {}, 0
        self._order = []
        for name, dt, shape in specs:
            st = dt if dt == "BF16" else _NP_TO_ST[np.dtype(dt)]
            shape = tuple(int(s) for s in shape)
            nbytes = int(np.prod(shape, dtype=np.int64)) * DTYPES[st].itemsize
            header[name] = {"dtype": st, "shape": list(shape), "data_offsets": [off, off + nbytes]}
            self._order.append((name, st, shape, nbytes))
            off += nbytes
        md = {}
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"safetensors metadata must map str to str, got {k!r}: {type(v).__name__}")
            md[k] = v
        self._hash = None
        self._placeholder = None
        if integrity_key is not None:
            md.pop(integrity_key, None)  # written last (see rindex below), computed here
            header["__metadata__"] = md
            self._hash = hashlib.sha256(canonical_header_bytes(header, integrity_key))
            self._hash.update(b"\0")
            self._placeholder = INTEGRITY_PREFIX + "0" * 64
            md[integrity_key] = self._placeholder
        header["__metadata__"] = md
        raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
        raw += b" " * (-len(raw) % 8)
        if len(raw) > MAX_HEADER:
            big = max(md, key=lambda k: len(md[k])) if md else None
            raise FormatError(f"{path}: the safetensors header would be {len(raw)} bytes, over the {MAX_HEADER}-byte "
                              "limit every reader enforces" + (f" (metadata {big!r} is {len(md[big])} characters)"
                                                              if big else ""))
        self._patch_at = None
        if self._placeholder is not None:
            # rindex: the integrity value is the last thing in the header (a tokenizer could hold the same text)
            self._patch_at = 8 + raw.rindex(self._placeholder.encode("ascii"))
        if os.path.isdir(path):
            raise OutputError(f"{path}: is a directory; give a file name for the output")
        self._tmp: Optional[str] = None
        self._f = None
        try:
            fd, self._tmp = new_temp(path)
            self._f = os.fdopen(fd, "wb")
        except OSError as e:
            self.abort()
            raise OutputError(f"cannot write {path}: {_describe(e)}") from None
        self._io(lambda: (self._f.write(struct.pack("<Q", len(raw))), self._f.write(raw)))
        self._next = 0
        self.total_bytes = 8 + len(raw) + off

    @property
    def temp_path(self) -> Optional[str]:
        return self._tmp

    def _io(self, fn):
        try:
            return fn()
        except OSError as e:
            self.abort()
            raise OutputError(f"cannot write {self.path}: {_describe(e)}; nothing was changed"
                              + (" (the previous file is untouched)" if os.path.exists(self.path) else "")) from None

    def write(self, name: str, arr: np.ndarray):
        if self._f is None:
            raise ValueError("writer is closed")
        exp_name, st, shape, nbytes = self._order[self._next]
        if name != exp_name:
            raise ValueError(f"writer expected tensor {exp_name!r} next, got {name!r}")
        arr = np.asarray(arr, order="C")  # (ascontiguousarray would turn a 0-d array into 1-d)
        if tuple(arr.shape) != shape or arr.nbytes != nbytes or DTYPES[st] != arr.dtype:
            raise ValueError(f"tensor {name!r}: got {arr.dtype} {arr.shape}, spec says {st} {shape}")
        data = memoryview(arr).cast("B") if arr.size else b""
        if self._hash is not None:
            self._hash.update(data)
        self._io(lambda: self._f.write(data))
        self._next += 1

    def close(self, validate=None):
        """Finish: sync, patch the integrity value, ``validate(tmp_path)``, rename over ``path``."""
        if self._f is None:
            raise ValueError("writer is closed")
        if self._next != len(self._order):
            self.abort()
            raise ValueError(f"only {self._next} of {len(self._order)} tensors written")

        def finish():
            if self._hash is not None:
                self._f.flush()
                self._f.seek(self._patch_at)
                self._f.write((INTEGRITY_PREFIX + self._hash.hexdigest()).encode("ascii"))
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
        self._io(finish)
        self._f = None
        try:
            if validate is not None:
                validate(self._tmp)
        except BaseException:
            self.abort()
            raise
        self._io(lambda: os.replace(self._tmp, self.path))
        self._tmp = None

    def abort(self):
        """Drop the temporary file (safe to call more than once, never raises OSError)."""
        if self._f is not None:
            try:
                self._f.close()
            except OSError:
                pass  # a full disk fails the final flush too; the file goes anyway
            self._f = None
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except OSError:
                pass
            self._tmp = None


def write_file(path: str, tensors: Dict[str, np.ndarray], metadata: Dict[str, str], validate=None,
               integrity_key: Optional[str] = None, bf16=()):
    """Write a whole dict of numpy arrays (small files: tests, tools, training state), atomically; names in
    ``bf16`` are uint16 arrays of bf16 bits, stored as BF16."""
    w = StreamingWriter(path, [(k, "BF16" if k in bf16 else v.dtype, v.shape) for k, v in tensors.items()],
                        metadata, integrity_key=integrity_key)
    try:
        for k, v in tensors.items():
            w.write(k, v)
        w.close(validate)
    except BaseException:
        w.abort()
        raise


def iter_files(paths: Iterable[str]) -> Iterator[SafeTensorsFile]:
    for p in paths:
        yield SafeTensorsFile(p)
