"""The packed model format: one .safetensors file with everything a backend needs (docs/format.md).

Ternary codes are stored row by row, each row padded to whole 128-bit words (16 bytes):

- ``2bit``:  4 codes per byte, code j of a byte in bits [2j+1:2j], two's complement
  (00 = 0, 01 = +1, 11 = -1; 10 is invalid). 64 codes per 128-bit word.
- ``base3``: 5 codes per byte, ``byte = sum_j (c_j + 1) * 3^j`` (0..242; 243..255 invalid).
  80 codes per 128-bit word, 1.6 bits per weight.

Padding codes are 0. Everything torch-free: this module runs on the board.
"""

import json
from typing import Dict, List, Optional, Tuple

import numpy as np

from .config import HGRNBitConfig
from .errors import ConfigError, FormatError
from .safetensors_io import SafeTensorsFile, StreamingWriter

FORMAT_NAME = "mmfree-packed"
FORMAT_VERSION = 1
PACKINGS = ("2bit", "base3")
WORD_BYTES = 16  # rows are padded to whole 128-bit bus words
CODES_PER_BYTE = {"2bit": 4, "base3": 5}
BITS_PER_CODE = {"2bit": 2.0, "base3": 1.6}

# BitLinear projections of one layer: name -> (rows, cols) as functions of (d, I)
LAYER_PROJ = ("i", "f", "g", "o", "gate_up", "down")


def proj_shape(name: str, d: int, inter: int) -> Tuple[int, int]:
    return {"i": (d, d), "f": (d, d), "g": (d, d), "o": (d, d),
            "gate_up": (2 * inter, d), "down": (d, inter)}[name]


def codes_per_word(packing: str) -> int:
    return WORD_BYTES * CODES_PER_BYTE[packing]


def row_bytes(k: int, packing: str) -> int:
    """Bytes per packed row of k codes (whole 16-byte words)."""
    cpw = codes_per_word(packing)
    return -(-k // cpw) * WORD_BYTES


# ----------------------------------------------------------------------------------------------
# pack / unpack
# ----------------------------------------------------------------------------------------------

_POW3 = np.array([1, 3, 9, 27, 81], dtype=np.int32)


def base3_lut() -> np.ndarray:
    """[256, 5] int8: the codes of each byte value (invalid bytes 243..255 decode to 0)."""
    b = np.arange(256, dtype=np.int32)
    lut = ((b[:, None] // _POW3[None, :]) % 3 - 1).astype(np.int8)
    lut[243:] = 0
    return lut


_BASE3_LUT = base3_lut()
_2BIT_LUT = np.array([0, 1, 0, -1], dtype=np.int8)  # 10 is invalid; rejected by validate_codes


def pack(codes: np.ndarray, packing: str) -> np.ndarray:
    """[N, K] ternary codes (any int/float dtype with values -1, 0, 1) -> [N, row_bytes] uint8."""
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"pack expects a 2-D array, got shape {codes.shape}")
    if packing not in PACKINGS:
        raise ValueError(f"unknown packing {packing!r}, expected one of {PACKINGS}")
    n, k = codes.shape
    c = codes.astype(np.int8)
    if c.size and (c.min() < -1 or c.max() > 1):
        raise ValueError("codes must be -1, 0 or +1")
    cpb = CODES_PER_BYTE[packing]
    rb = row_bytes(k, packing)
    full = np.zeros((n, rb * cpb), dtype=np.int32)
    full[:, :k] = c
    full = full.reshape(n, rb, cpb)
    if packing == "2bit":
        u = full & 3  # two's complement 2-bit
        out = u[..., 0] | (u[..., 1] << 2) | (u[..., 2] << 4) | (u[..., 3] << 6)
    else:
        out = ((full + 1) * _POW3).sum(axis=-1)
    return out.astype(np.uint8)


def unpack(packed: np.ndarray, k: int, packing: str, dtype=np.int8) -> np.ndarray:
    """[N, row_bytes] uint8 -> [N, k] codes."""
    packed = np.asarray(packed, dtype=np.uint8)
    n = packed.shape[0]
    if packing == "2bit":
        shifts = np.array([0, 2, 4, 6], dtype=np.uint8)
        c = _2BIT_LUT[(packed[..., None] >> shifts) & 3]
    elif packing == "base3":
        c = _BASE3_LUT[packed]
    else:
        raise ValueError(f"unknown packing {packing!r}")
    return c.reshape(n, -1)[:, :k].astype(dtype, copy=False)


def validate_codes(packed: np.ndarray, k: int, packing: str, name: str, path: str):
    """Reject invalid byte values and non-zero padding codes."""
    p = np.asarray(packed)
    if packing == "2bit":
        bad = ((p >> 1) & 0x55) & ~(p & 0x55)  # a pair with high bit set, low bit clear: 10
        if bad.any():
            r = int(np.argwhere(bad.any(axis=1))[0, 0])
            raise FormatError(f"{path}: tensor {name!r} row {r} holds the invalid 2-bit code 10")
    else:
        if p.size and p.max() > 242:
            r = int(np.argwhere((p > 242).any(axis=1))[0, 0])
            raise FormatError(f"{path}: tensor {name!r} row {r} holds a byte > 242, invalid in base-3 packing")
    cpb = CODES_PER_BYTE[packing]
    first_pad_byte = k // cpb
    if first_pad_byte < p.shape[1]:
        tail = unpack(p[:, first_pad_byte:], p.shape[1] * cpb - first_pad_byte * cpb, packing)
        tail = tail[:, k - first_pad_byte * cpb:]
        if tail.any():
            raise FormatError(f"{path}: tensor {name!r} has non-zero padding codes beyond column {k}")


# ----------------------------------------------------------------------------------------------
# tensor list
# ----------------------------------------------------------------------------------------------

def tensor_specs(cfg: HGRNBitConfig, packing: str) -> List[Tuple[str, object, Tuple[int, ...]]]:
    """Every tensor of a packed file, in file order: (name, dtype, shape)."""
    d, inter, L, V = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.vocab_size
    f32 = np.dtype("<f4")
    specs = [("embeddings", np.dtype("<u2"), (V, d)),  # bf16 bits
             ("lower_bounds", f32, (L, d))]            # the transformed table: lb[0] = 0
    for li in range(L):
        p = f"layers.{li}."
        specs.append((p + "attn_norm", f32, (d,)))
        specs.append((p + "g_norm", f32, (d,)))
        specs.append((p + "mlp_norm", f32, (d,)))
        for proj in LAYER_PROJ:
            n, k = proj_shape(proj, d, inter)
            specs += [(p + proj + ".codes", np.dtype(np.uint8), (n, row_bytes(k, packing))),
                      (p + proj + ".alpha", f32, (1,)),
                      (p + proj + ".gain", f32, (k,))]
    specs += [("final_norm", f32, (d,)),
              ("lm_head.codes", np.dtype(np.uint8), (V, row_bytes(d, packing))),
              ("lm_head.alpha", f32, (1,)),
              ("lm_head.gain", f32, (d,))]
    return specs


def proj_k(name: str, cfg: HGRNBitConfig) -> int:
    """The input width (columns) of the projection a tensor name belongs to."""
    base = name.split(".")[-2] if name.startswith("layers.") else name.split(".")[0]
    if base == "lm_head":
        return cfg.hidden_size
    return proj_shape(base, cfg.hidden_size, cfg.intermediate_size)[1]


def metadata(cfg: HGRNBitConfig, packing: str, tokenizer_json: Optional[str] = None,
             source: str = "") -> Dict[str, str]:
    md = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION), "packing": packing,
          "config": json.dumps(cfg.to_dict(), sort_keys=True), "source": source}
    if tokenizer_json is not None:
        md["tokenizer"] = tokenizer_json
    return md


def open_writer(path: str, cfg: HGRNBitConfig, packing: str, tokenizer_json: Optional[str] = None,
                source: str = "") -> StreamingWriter:
    return StreamingWriter(path, tensor_specs(cfg, packing), metadata(cfg, packing, tokenizer_json, source))


# ----------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------

class PackedModel:
    """A checked packed model file. ``tensor(name)`` gives the stored arrays (memory-mapped).

    Attributes: ``config`` (HGRNBitConfig), ``packing``, ``tokenizer_json`` (str or None),
    ``path``, ``file_size``.
    """

    def __init__(self, path: str, check_codes: bool = True):
        self.path = path
        st = SafeTensorsFile(path)
        self._st = st
        md = st.metadata
        if md.get("format") != FORMAT_NAME:
            raise FormatError(f"{path}: not an mmfree packed model (metadata format={md.get('format')!r}, "
                              f"expected {FORMAT_NAME!r}); convert a checkpoint with `mmfree convert`")
        try:
            version = int(md.get("format_version", ""))
        except ValueError:
            raise FormatError(f"{path}: unreadable format_version {md.get('format_version')!r}") from None
        if version != FORMAT_VERSION:
            raise FormatError(f"{path}: packed format version {version}, this mmfree reads version "
                              f"{FORMAT_VERSION}; re-run `mmfree convert` with this version")
        self.packing = md.get("packing")
        if self.packing not in PACKINGS:
            raise FormatError(f"{path}: unknown packing {self.packing!r}, expected one of {PACKINGS}")
        try:
            self.config = HGRNBitConfig.from_dict(json.loads(md["config"]))
        except KeyError:
            raise FormatError(f"{path}: metadata has no config") from None
        except (ValueError, ConfigError) as e:
            raise FormatError(f"{path}: bad config in metadata: {e}") from None
        self.tokenizer_json = md.get("tokenizer")
        self.source = md.get("source", "")
        self.file_size = st.file_size
        specs = tensor_specs(self.config, self.packing)
        expected = {n for n, _, _ in specs}
        for name, dt, shape in specs:
            if name not in st:
                raise FormatError(f"{path}: missing tensor {name!r}")
            got_dt, got_shape = st.info(name)
            want_dt = {np.dtype(np.uint8): "U8", np.dtype("<u2"): "U16", np.dtype("<f4"): "F32"}[np.dtype(dt)]
            if got_dt != want_dt:
                raise FormatError(f"{path}: tensor {name!r} has dtype {got_dt}, expected {want_dt}")
            if tuple(got_shape) != tuple(shape):
                raise FormatError(f"{path}: tensor {name!r} has shape {list(got_shape)}, the config and "
                                  f"packing {self.packing!r} imply {list(shape)}")
        extra = [n for n in st.names if n not in expected]
        if extra:
            raise FormatError(f"{path}: unexpected tensor {extra[0]!r}")
        for name, dt, shape in specs:
            if dt == np.dtype("<f4") and not np.all(np.isfinite(st.get(name))):
                raise FormatError(f"{path}: tensor {name!r} holds NaN or infinity")
        if check_codes:
            for name, dt, shape in specs:
                if name.endswith(".codes"):
                    validate_codes(st.get(name), proj_k(name, self.config), self.packing, name, path)

    def tensor(self, name: str) -> np.ndarray:
        return self._st.get(name)

    @property
    def names(self) -> List[str]:
        return self._st.names

    def nbytes(self, suffix: str = ".codes") -> int:
        return sum(int(self.tensor(n).nbytes) for n in self.names if n.endswith(suffix))

    def n_weights(self) -> int:
        """Ternary weights (unpadded) in the file."""
        c = self.config
        per_layer = sum(np.prod(proj_shape(p, c.hidden_size, c.intermediate_size)) for p in LAYER_PROJ)
        return int(per_layer * c.num_hidden_layers + c.vocab_size * c.hidden_size)

    def bits_per_weight(self) -> float:
        """Stored bits per ternary weight, row padding included."""
        return 8.0 * self.nbytes(".codes") / self.n_weights()


def load(path: str, check_codes: bool = True) -> PackedModel:
    return PackedModel(path, check_codes=check_codes)
