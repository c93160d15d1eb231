"""The packed model format: one .safetensors file with everything a backend needs (docs/format.md).

Ternary codes are stored row by row, each row padded to whole 128-bit words (16 bytes):

- ``2bit``:  4 codes per byte, code j of a byte in bits [2j+1:2j], two's complement
  (00 = 0, 01 = +1, 11 = -1; 10 is invalid). 64 codes per 128-bit word.
- ``base3``: 5 codes per byte, ``byte = sum_j (c_j + 1) * 3^j`` (0..242; 243..255 invalid).
  80 codes per 128-bit word, 1.6 bits per weight.

Padding codes are 0. Everything torch-free: this module runs on the board.
"""

import json
import re
from typing import Dict, List, Optional, Tuple

import numpy as np

from .config import HGRNBitConfig
from .errors import ConfigError, FormatError
from .safetensors_io import INTEGRITY_PREFIX, SafeTensorsFile, StreamingWriter, strict_json_loads
from .safetensors_io import bf16_to_f32 as _bf16_to_f32

FORMAT_NAME = "mmfree-packed"
FORMAT_VERSION = 1
INTEGRITY_KEY = "integrity"  # metadata: "sha256:<64 hex>" of the canonical header and the data (optional)
METADATA_KEYS = ("format", "format_version", "packing", "config", "source", "tokenizer", INTEGRITY_KEY)
# plausibility limits (docs/format.md): alpha = mean|W| >= 1e-5 by construction; every gain, norm and
# embedding finite and within +-MAX_ABS; lower bounds in [0, 1] with row 0 exactly 0
ALPHA_MIN = 1e-5
MAX_ABS = 1e6
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
    """A StreamingWriter for a packed file (integrity hash included); ``close(validate)`` renames it
    into place only after ``validate`` accepted it."""
    return StreamingWriter(path, tensor_specs(cfg, packing), metadata(cfg, packing, tokenizer_json, source),
                           integrity_key=INTEGRITY_KEY)


def expected_data_bytes(cfg: HGRNBitConfig, packing: str) -> int:
    """Bytes of the data region that the config and packing imply (O(1): no loop over layers)."""
    d, inter, L, V = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.vocab_size
    per_layer = 3 * 4 * d
    for proj in LAYER_PROJ:
        n, k = proj_shape(proj, d, inter)
        per_layer += n * row_bytes(k, packing) + 4 + 4 * k
    return 2 * V * d + 4 * L * d + L * per_layer + 4 * d + V * row_bytes(d, packing) + 4 + 4 * d


def expected_tensor_count(cfg: HGRNBitConfig) -> int:
    return 6 + (3 + 3 * len(LAYER_PROJ)) * cfg.num_hidden_layers


def bf16_finite(bits: np.ndarray) -> np.ndarray:
    """True where bf16 bit patterns are finite (exponent not all ones)."""
    return (np.asarray(bits, np.uint16) & np.uint16(0x7F80)) != np.uint16(0x7F80)


# ----------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------

class PackedModel:
    """A checked packed model file, held in memory. ``tensor(name)`` gives the stored arrays
    (read-only views of the data read once at load: no memory map, so a file changed on disk later
    cannot crash the process).

    Attributes: ``config`` (HGRNBitConfig), ``packing``, ``tokenizer_json`` (str or None),
    ``source``, ``path``, ``file_size``, ``integrity`` ("verified", "not checked" or "absent": files
    written before the hash existed have none).

    ``verify=False`` skips the integrity hash (for speed); every other check still runs.
    ``check_codes=False`` skips the code-byte scan (the hash still covers the codes).
    """

    def __init__(self, path: str, check_codes: bool = True, verify: bool = True):
        self.path = path
        st = SafeTensorsFile(path)
        self._st = st
        md = st.metadata
        fmt = md.get("format")
        if fmt != FORMAT_NAME:
            raise FormatError(f"{path}: not an mmfree packed model (metadata format={fmt!r}, "
                              f"expected {FORMAT_NAME!r}); convert a checkpoint with `mmfree convert`")
        ver = md.get("format_version", "")
        if not re.fullmatch(r"[0-9]{1,6}", ver):
            raise FormatError(f"{path}: unreadable format_version {ver!r}")
        version = int(ver)
        if version != FORMAT_VERSION:
            raise FormatError(f"{path}: packed format version {version}, this mmfree reads version "
                              f"{FORMAT_VERSION}; re-run `mmfree convert` on the original checkpoint with this version")
        self.packing = md.get("packing")
        if self.packing not in PACKINGS:
            raise FormatError(f"{path}: unknown packing {self.packing!r}, expected one of {PACKINGS}")
        if "config" not in md:
            raise FormatError(f"{path}: metadata has no config")
        cfg_d = strict_json_loads(md["config"], f"{path}: metadata config")
        if not isinstance(cfg_d, dict):
            raise FormatError(f"{path}: bad config in metadata: not a JSON object")
        try:
            self.config = HGRNBitConfig.from_dict(cfg_d)
        except ConfigError as e:
            raise FormatError(f"{path}: bad config in metadata: {e}") from None
        self.tokenizer_json = md.get("tokenizer")
        if self.tokenizer_json is not None:
            tj = strict_json_loads(self.tokenizer_json, f"{path}: metadata tokenizer")
            if not isinstance(tj, dict):
                raise FormatError(f"{path}: metadata tokenizer is not a JSON object (a tokenizer.json)")
        self.source = md.get("source", "")
        self.file_size = st.file_size
        cfg = self.config
        # sizes first, in O(1): a small file declaring a huge model fails here, before any loop over layers
        n_want = expected_tensor_count(cfg)
        if len(st.names) != n_want:
            raise FormatError(f"{path}: the config ({cfg.num_hidden_layers} layers) implies {n_want} tensors, "
                              f"the file holds {len(st.names)}")
        want_bytes = expected_data_bytes(cfg, self.packing)
        if want_bytes != st.data_len:
            raise FormatError(f"{path}: the config and packing {self.packing!r} imply {want_bytes} data bytes, "
                              f"the file holds {st.data_len} (truncated, or a config that does not match)")
        specs = tensor_specs(cfg, self.packing)
        want_dts = {np.dtype(np.uint8): "U8", np.dtype("<u2"): "U16", np.dtype("<f4"): "F32"}
        pos = 0
        for name, dt, shape in specs:
            if name not in st:
                raise FormatError(f"{path}: missing tensor {name!r}")
            got_dt, got_shape = st.info(name)
            want_dt = want_dts[np.dtype(dt)]
            if got_dt != want_dt:
                raise FormatError(f"{path}: tensor {name!r} has dtype {got_dt}, expected {want_dt}")
            if tuple(got_shape) != tuple(shape):
                raise FormatError(f"{path}: tensor {name!r} has shape {list(got_shape)}, the config and "
                                  f"packing {self.packing!r} imply {list(shape)}")
            b, e = st.span(name)
            if b != pos:
                raise FormatError(f"{path}: tensor {name!r} is not where the format puts it "
                                  f"(data offset {b}, expected {pos}: tensors follow the documented order)")
            pos = e
        st.preload()
        self._check_values(specs, check_codes)
        integ = md.get(INTEGRITY_KEY)
        if integ is None:
            self.integrity = "absent"
        elif not re.fullmatch(re.escape(INTEGRITY_PREFIX) + "[0-9a-f]{64}", integ):
            raise FormatError(f"{path}: metadata {INTEGRITY_KEY!r} is not {INTEGRITY_PREFIX}<64 hex digits>")
        elif verify:
            got = st.integrity_digest(INTEGRITY_KEY)
            if got != integ:
                raise FormatError(f"{path}: integrity check failed: the content hash is {got[:19]}..., the "
                                  f"header records {integ[:19]}... (the file is corrupt; convert it again, or "
                                  "load with verify=False to skip the check at your own risk)")
            self.integrity = "verified"
        else:
            self.integrity = "not checked"

    def _check_values(self, specs, check_codes: bool):
        """NaN/Inf in every float tensor (bf16 embeddings included), plausibility, code bytes."""
        path, st = self.path, self._st
        emb = st.get("embeddings")
        ok = bf16_finite(emb)
        if not ok.all():
            r = int(np.argwhere(~ok.all(axis=1))[0, 0])
            raise FormatError(f"{path}: tensor 'embeddings' holds NaN or infinity (bf16, row {r})")
        big = np.abs(_bf16_to_f32(emb)) > MAX_ABS
        if big.any():
            raise FormatError(f"{path}: tensor 'embeddings' holds a value beyond +-{MAX_ABS:g} (implausible)")
        for name, dt, shape in specs:
            if dt != np.dtype("<f4"):
                continue
            a = st.get(name)
            if not np.all(np.isfinite(a)):
                raise FormatError(f"{path}: tensor {name!r} holds NaN or infinity")
            if name.endswith(".alpha"):
                v = float(a[0])
                if not ALPHA_MIN <= v <= MAX_ABS:
                    raise FormatError(f"{path}: tensor {name!r} is {v!r}; alpha = mean|W| must lie in "
                                      f"[{ALPHA_MIN:g}, {MAX_ABS:g}]")
            elif name == "lower_bounds":
                if a.size and (a.min() < 0 or a.max() > 1):
                    raise FormatError(f"{path}: tensor 'lower_bounds' has values outside [0, 1]")
                if a.shape[0] and np.any(a[0] != 0):
                    raise FormatError(f"{path}: tensor 'lower_bounds' row 0 is not 0 (the format stores "
                                      "cumsum(softmax) minus its first row)")
            elif a.size and np.abs(a).max() > MAX_ABS:
                raise FormatError(f"{path}: tensor {name!r} holds a value beyond +-{MAX_ABS:g} (implausible)")
        if check_codes:
            for name, dt, shape in specs:
                if name.endswith(".codes"):
                    validate_codes(st.get(name), proj_k(name, self.config), self.packing, name, path)

    def tensor(self, name: str) -> np.ndarray:
        if name not in self._st:
            raise FormatError(f"{self.path}: no tensor {name!r} in this model")
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


VERIFY_DEFAULT = True  # `mmfree ... --no-verify` turns it off for the command's loads


def load(path: str, check_codes: bool = True, verify: Optional[bool] = None) -> PackedModel:
    """Open and check a packed model (docs/format.md, "Checks on load"); FormatError on any problem.
    ``verify=False`` skips the integrity hash (every other check still runs); None: VERIFY_DEFAULT."""
    return PackedModel(path, check_codes=check_codes, verify=VERIFY_DEFAULT if verify is None else verify)


def add_integrity(src: str, dst: Optional[str] = None) -> PackedModel:
    """Re-pack a packed file from itself with an integrity hash (files written before the hash
    existed): every tensor byte and metadata value kept, the hash added, written atomically and
    validated by ``load`` before it replaces ``dst`` (default: ``src`` itself, in place)."""
    m = load(src)
    dst = src if dst is None else dst
    md = {k: v for k, v in m._st.metadata.items() if k != INTEGRITY_KEY}
    specs = tensor_specs(m.config, m.packing)
    w = StreamingWriter(dst, specs, md, integrity_key=INTEGRITY_KEY)
    out = []
    try:
        for name, _, _ in specs:
            w.write(name, m.tensor(name))
        w.close(lambda tmp: out.append(load(tmp)))
    except BaseException:
        w.abort()
        raise
    return out[0]
