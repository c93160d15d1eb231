"""C-simulated mmfree_kernel through ctypes: the HLS C++ of hls/ compiled with g++ (``make csim``).

The emulator backend uses this to run the very kernel source that Vitis HLS synthesizes::

    lib = csim.load()                          # build/csim/<board>/libmmfree_csim.so
    mem = csim.Memory()                        # host buffers at fake physical addresses
    blob = mem.alloc(csim.pack_layer_blob(packed_model, 0, ports=lib.config["ports"]))
    ...
    regs = csim.regs_image({"OP": csim.OP_LAYER, "D": d, ..., "W0_ADDR": blob.addr, ...})
    lib.call(regs, mem.resolve)                # raises CsimError naming the bad register

Register offsets come from hls/include/mmfree_regs.h (``REGS``, parsed at import), the DDR layout
(layer and head blobs) from mmfree.layout, checked against the library by tests/test_csim_kernel.py. ``CsimModel`` runs a whole packed model token by token, either
one op per call (EMBED, LAYER per layer, HEAD) or one whole-token call (OP_TOKEN on the weights arena).
"""

import ctypes
import os
import re
from typing import Callable, Dict, Optional

import numpy as np

from . import packed as pk

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HLS_INCLUDE = os.path.join(ROOT, "hls", "include")
REGS_HEADER = os.path.join(HLS_INCLUDE, "mmfree_regs.h")
DEFAULT_BOARD = "kv260"

F32 = np.float32
PACKING_CODE = {"2bit": 0, "base3": 1}
from .layout import HEAD_VECS, LAYER_VECS, N_ALPHA, PROJ  # noqa: E402,F401
CYCLE_CLASSES = ("mv", "vec", "red", "mem")  # MMFREE_CYC_* order


class CsimError(RuntimeError):
    pass


# ----------------------------------------------------------------------------------------------
# register map (parsed from the one C header)
# ----------------------------------------------------------------------------------------------

def parse_regs(path: str = REGS_HEADER) -> Dict[str, int]:
    """``#define MMFREE_<NAME> <int>`` lines of mmfree_regs.h -> {NAME: value} (prefix dropped)."""
    out = {}
    with open(path, "r", encoding="utf-8") as f:
        for line in f:
            m = re.match(r"\s*#define\s+MMFREE_(\w+)\s+(0x[0-9a-fA-F]+|\d+)\b", line)
            if m:
                out[m.group(1)] = int(m.group(2), 0)
    return out


REGS = parse_regs()
OP_EMBED, OP_LAYER, OP_HEAD = REGS["OP_EMBED"], REGS["OP_LAYER"], REGS["OP_HEAD"]
OP_BODY, OP_TOKEN, OP_IDENT = REGS["OP_BODY"], REGS["OP_TOKEN"], REGS["OP_IDENT"]
REG = {k[4:]: v for k, v in REGS.items() if k.startswith("REG_")}  # "OP" -> 0x10, "X_ADDR" -> 0x40, ...
ADDR_REGS = tuple(k for k in REG if k.endswith("_ADDR"))
REG_SPAN = REG["SPAN"]


def reg_name(offset: int) -> str:
    for k, v in REG.items():
        if v == offset and k != "SPAN":
            return k
    return hex(offset)


def regs_image(values: Dict[str, int]) -> np.ndarray:
    """A register-file image (uint32 words at offset/4) from {"OP": .., "X_ADDR": addr, ...}."""
    img = np.zeros(REG_SPAN // 4, np.uint32)
    for k, v in values.items():
        off = REG[k]
        if k.endswith("_ADDR"):
            img[off // 4] = int(v) & 0xFFFFFFFF
            img[off // 4 + 1] = (int(v) >> 32) & 0xFFFFFFFF
        else:
            img[off // 4] = int(v)
    return img


# ----------------------------------------------------------------------------------------------
# DDR layout: mmfree.layout (the Python side of hls/include/mmfree_layout.h), re-exported here
# ----------------------------------------------------------------------------------------------
from .layout import (ARENA_ALIGN, arena_layout, head_layout, layer_layout, layer_stride,  # noqa: E402,F401
                     pack_arena, pack_head_blob, pack_layer_blob, pad4, state_bytes, vec_bytes)


# ----------------------------------------------------------------------------------------------
# host memory with physical addresses (what the emulator's allocate() does, minimal)
# ----------------------------------------------------------------------------------------------

class Buffer:
    def __init__(self, addr: int, array: np.ndarray):
        self.addr, self.array = addr, array

    @property
    def nbytes(self) -> int:
        return self.array.nbytes


class Memory:
    """Buffers at fake physical addresses; ``resolve`` is the C-sim callback (None outside)."""

    def __init__(self, base: int = 0x4000_0000):
        self.buffers = []
        self._next = base

    def alloc(self, data_or_size, dtype=np.uint8) -> Buffer:
        if isinstance(data_or_size, np.ndarray):
            src = data_or_size
            arr = np.zeros(src.shape, src.dtype)
            arr[...] = src
        else:
            arr = np.zeros(int(data_or_size), dtype)
        buf = Buffer(self._next, arr)
        self._next += (max(arr.nbytes, 1) + 4095) // 4096 * 4096 + 4096
        self.buffers.append(buf)
        return buf

    def resolve(self, addr: int, nbytes: int) -> Optional[int]:
        for b in self.buffers:
            if b.addr <= addr and addr + nbytes <= b.addr + b.nbytes:
                return b.array.ctypes.data + (addr - b.addr)
        return None


# ----------------------------------------------------------------------------------------------
# the library
# ----------------------------------------------------------------------------------------------

RESOLVE_FN = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_void_p)
TRACE_FN = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p,
                            ctypes.c_uint64, ctypes.c_uint64, ctypes.c_void_p)
_TRACE_DTYPES = {0: np.float32, 1: np.int32, 2: np.int8}


def library_path(board: str = DEFAULT_BOARD) -> str:
    return os.environ.get("MMFREE_CSIM_LIB") or os.path.join(ROOT, "build", "csim", board, "libmmfree_csim.so")


class Csim:
    """ctypes handle on libmmfree_csim.so. One kernel call at a time (the library is not reentrant)."""

    def __init__(self, path: str):
        if not os.path.exists(path):
            raise CsimError(f"{path} does not exist: the C-simulation library is not built; run `make csim`")
        self.path = path
        lib = self.lib = ctypes.CDLL(path)
        lib.mmfree_csim_call.argtypes = [ctypes.POINTER(ctypes.c_uint32), ctypes.c_size_t, RESOLVE_FN, ctypes.c_void_p]
        lib.mmfree_csim_call.restype = ctypes.c_int
        lib.mmfree_csim_strerror.argtypes = [ctypes.c_int]
        lib.mmfree_csim_strerror.restype = ctypes.c_char_p
        lib.mmfree_csim_set_trace.argtypes = [TRACE_FN, ctypes.c_void_p]
        lib.mmfree_csim_counters.argtypes = [ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ctypes.c_uint64), ctypes.c_int]
        lib.mmfree_csim_config.argtypes = [ctypes.POINTER(ctypes.c_uint32), ctypes.c_int]
        lib.mmfree_csim_board.restype = ctypes.c_char_p
        for name in ("mmfree_layer_blob_bytes", "mmfree_head_blob_bytes", "mmfree_layer_params_offset",
                     "mmfree_head_params_offset", "mmfree_layer_codes_offset", "mmfree_vec_bytes", "mmfree_emb_bytes",
                     "mmfree_layer_stride", "mmfree_arena_head_offset", "mmfree_arena_bytes", "mmfree_state_bytes"):
            getattr(lib, name).restype = ctypes.c_uint64
        cfg = (ctypes.c_uint32 * 32)()
        n = lib.mmfree_csim_config(cfg, 32)
        keys = ("regs_version", "ports", "port_bits", "max_d", "max_inter", "max_vocab", "vec_lanes", "mv_depth",
                "vec_depth", "float_lanes", "red_depth", "mem_depth", "head_rows", "max_layers", "call_cycles",
                "sigmoid_lanes", "tokens")
        self.config = {k: int(cfg[i]) for i, k in enumerate(keys[:n])}
        self.config["board"] = lib.mmfree_csim_board().decode()
        if self.config["regs_version"] != REGS["REGS_VERSION"]:
            raise CsimError(f"{path} was built for register map version {self.config['regs_version']}, "
                            f"hls/include/mmfree_regs.h is version {REGS['REGS_VERSION']}: run `make csim`")
        self._trace_cb = None

    # ------------------------------------------------------------------ calls
    def call(self, regs: np.ndarray, resolve: Callable[[int, int], Optional[int]]) -> None:
        """Run one kernel call. resolve(addr, nbytes) -> host address (int) or None. The kernel's output
        registers (the identity block) are written into ``regs``."""
        img = np.ascontiguousarray(regs, dtype=np.uint32)

        def _resolve(addr, nbytes, _ctx):
            try:
                return resolve(int(addr), int(nbytes)) or None
            except Exception:  # an exception cannot cross the C boundary: report as unresolvable
                return None

        cb = RESOLVE_FN(_resolve)
        code = self.lib.mmfree_csim_call(img.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)), img.size, cb, None)
        if img is not regs and isinstance(regs, np.ndarray):
            regs[:img.size] = img  # output registers back into the caller's image
        if code:
            raise CsimError(self.describe(code, img))

    def describe(self, code: int, regs: Optional[np.ndarray] = None) -> str:
        msg = self.lib.mmfree_csim_strerror(code).decode()
        if code >= 0x1000:
            off = code & 0xFFF
            name = reg_name(off)
            if regs is not None:
                addr = int(regs[off // 4]) | (int(regs[off // 4 + 1]) << 32)
                return f"mmfree_kernel: register {name} (0x{off:02x}) = 0x{addr:x}: {msg}"
            return f"mmfree_kernel: register {name} (0x{off:02x}): {msg}"
        return f"mmfree_kernel: {msg} (code {code})"

    # ------------------------------------------------------------------ observation
    def set_trace(self, fn: Optional[Callable[[str, np.ndarray, int], None]]) -> None:
        """fn(name, values, offset) for every intermediate (copies); None turns tracing off."""
        if fn is None:
            self._trace_cb = None
            self.lib.mmfree_csim_set_trace(TRACE_FN(), None)
            return

        def _cb(prefix, name, dtype, data, offset, count, _ctx):
            key = name.decode() if not prefix else prefix.decode() + "." + name.decode()
            dt = _TRACE_DTYPES[dtype]
            arr = np.ctypeslib.as_array(ctypes.cast(data, ctypes.POINTER(np.ctypeslib.as_ctypes_type(dt))),
                                        shape=(count,)).copy() if count else np.zeros(0, dt)
            fn(key, arr, int(offset))

        self._trace_cb = TRACE_FN(_cb)
        self.lib.mmfree_csim_set_trace(self._trace_cb, None)

    def counters(self) -> Dict[str, tuple]:
        """{"mv"|"vec"|"red"|"mem": (loop iterations, loop entries)} since the last reset."""
        it, lp = (ctypes.c_uint64 * 8)(), (ctypes.c_uint64 * 8)()
        n = self.lib.mmfree_csim_counters(it, lp, 8)
        return {CYCLE_CLASSES[c]: (int(it[c]), int(lp[c])) for c in range(n)}

    def reset_counters(self) -> None:
        self.lib.mmfree_csim_reset_counters()

    # ------------------------------------------------------------------ layout (from the C++)
    def layer_blob_bytes(self, d: int, inter: int, packing: str) -> int:
        return int(self.lib.mmfree_layer_blob_bytes(d, inter, PACKING_CODE[packing]))

    def head_blob_bytes(self, d: int, vocab: int, packing: str) -> int:
        return int(self.lib.mmfree_head_blob_bytes(d, vocab, PACKING_CODE[packing]))

    def layer_stride(self, d: int, inter: int, packing: str) -> int:
        return int(self.lib.mmfree_layer_stride(d, inter, PACKING_CODE[packing]))

    def arena_head_offset(self, layers: int, d: int, inter: int, packing: str) -> int:
        return int(self.lib.mmfree_arena_head_offset(layers, d, inter, PACKING_CODE[packing]))

    def arena_bytes(self, layers: int, d: int, inter: int, vocab: int, packing: str) -> int:
        return int(self.lib.mmfree_arena_bytes(layers, d, inter, vocab, PACKING_CODE[packing]))

    def state_bytes(self, layers: int, d: int) -> int:
        return int(self.lib.mmfree_state_bytes(layers, d))


_LIBS: Dict[str, Csim] = {}


def load(board: str = DEFAULT_BOARD, path: Optional[str] = None) -> Csim:
    """The C-simulation library for a board (cached); CsimError if it is not built."""
    path = path or library_path(board)
    if path not in _LIBS:
        _LIBS[path] = Csim(path)
    return _LIBS[path]


class TraceRecorder:
    """Collects traced intermediates into whole arrays: rec.values["i.q"], ..."""

    def __init__(self):
        self.parts = {}

    def __call__(self, key, arr, offset):
        self.parts.setdefault(key, []).append((offset, arr))

    @property
    def values(self) -> Dict[str, np.ndarray]:
        out = {}
        for k, parts in self.parts.items():
            n = max(o + a.size for o, a in parts)
            v = np.zeros(n, parts[0][1].dtype)
            for o, a in parts:
                v[o:o + a.size] = a
            out[k] = v
        return out

    def clear(self):
        self.parts = {}


class CsimModel:
    """A packed model run token by token by the C-simulated kernel (like the driver's schedule)."""

    def __init__(self, model, board: str = DEFAULT_BOARD, lib: Optional[Csim] = None):
        self.packed = model if isinstance(model, pk.PackedModel) else pk.load(model)
        self.lib = lib or load(board)
        cfg = self.config = self.packed.config
        self.d, self.inter, self.vocab = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
        self.n_layers = cfg.num_hidden_layers
        self.mem = Memory()
        self.emb = self.mem.alloc(np.ascontiguousarray(self.packed.tensor("embeddings"), np.uint16))
        self.ports = self.lib.config["ports"]
        self.blobs = [self.mem.alloc(pack_layer_blob(self.packed, li, ports=self.ports)) for li in range(self.n_layers)]
        self.head = self.mem.alloc(pack_head_blob(self.packed, ports=self.ports))
        self.x = self.mem.alloc(vec_bytes(self.d) // 4, F32)
        self.h = [self.mem.alloc(vec_bytes(self.d) // 4, F32) for _ in range(self.n_layers)]
        self.out = self.mem.alloc(vec_bytes(self.vocab) // 4, F32)

        self._arena = self._state = None

    @property
    def arena(self) -> Buffer:
        """The weights arena (allocated on first use) for OP_BODY / OP_TOKEN."""
        if self._arena is None:
            self._arena = self.mem.alloc(pack_arena(self.packed, ports=self.ports))
        return self._arena

    @property
    def state(self) -> Buffer:
        """The [L, pad4(d)] state buffer of OP_BODY / OP_TOKEN (its own, not the per-layer self.h)."""
        if self._state is None:
            self._state = self.mem.alloc(state_bytes(self.n_layers, self.d) // 4, F32)
        return self._state

    def regs(self, op: int, token: int = 0, blob: Optional[Buffer] = None, h: Optional[Buffer] = None,
             layers: Optional[int] = None) -> np.ndarray:
        v = {"OP": op, "D": self.d, "INTER": self.inter, "VOCAB": self.vocab,
             "PACKING": PACKING_CODE[self.packed.packing], "TOKEN": token, "X_ADDR": self.x.addr,
             "EMB_ADDR": self.emb.addr, "OUT_ADDR": self.out.addr,
             "LAYERS": self.n_layers if layers is None else layers}
        if h is not None:
            v["H_ADDR"] = h.addr
        if blob is not None:
            for p in range(self.lib.config["ports"]):
                v[f"W{p}_ADDR"] = blob.addr
        return regs_image(v)

    def reset(self):
        for h in self.h:
            h.array[:] = 0
        if self._state is not None:
            self._state.array[:] = 0

    def step(self, token: int) -> np.ndarray:
        """One decode step: logits [V] (a copy); state advanced."""
        self.lib.call(self.regs(OP_EMBED, token=token), self.mem.resolve)
        for li in range(self.n_layers):
            self.lib.call(self.regs(OP_LAYER, blob=self.blobs[li], h=self.h[li]), self.mem.resolve)
        self.lib.call(self.regs(OP_HEAD, blob=self.head), self.mem.resolve)
        return self.out.array[:self.vocab].copy()

    def token(self, token: int, op: int = OP_TOKEN) -> Optional[np.ndarray]:
        """One whole-token call on the arena and the [L, pad4(d)] state: OP_TOKEN returns the logits [V]
        (a copy); OP_BODY (a prompt token) returns None."""
        self.lib.call(self.regs(op, token=token, blob=self.arena, h=self.state), self.mem.resolve)
        return self.out.array[:self.vocab].copy() if op == OP_TOKEN else None
