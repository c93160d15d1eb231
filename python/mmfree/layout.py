"""DDR layout of a packed model for mmfree_kernel: the Python side of hls/include/mmfree_layout.h.

One module for the board driver, the C-simulation wrapper and the cycle model. numpy only (it runs
on the board, where hls/ is not installed); tests/test_csim_kernel.py and tests/test_driver.py check
every function against the C library's exported helpers.

    layer blob: codes i, f, g, o (d rows), gate_up (2I rows), down (d rows of I), each row in the
                packed format's 16-byte words; then float32 params: alpha[8], attn_norm, mlp_norm,
                g_norm, this layer's lower-bound row, gain_i, gain_f, gain_g, gain_o, gain_gate_up,
                gain_down, each padded to a multiple of 4 floats
    head blob:  lm_head codes (V rows), then alpha[8], final_norm, gain
    weights arena (OP_BODY / OP_TOKEN): layer l at l * stride (stride = blob rounded up to 4 KB, so
                every layer's bursts split at 4 KB boundaries exactly as in a page-aligned buffer of
                its own), then the head blob
    state: [L, pad4(d)] float32, row l at H_ADDR + 4 * l * pad4(d)

Rows of every projection are padded with zero rows to a multiple of ROW_GROUP (12) and stored
port-major for the build's P weight ports (``ports``): port p streams rows p, p + P, p + 2P, ... as
one contiguous range (the lm_head: within each chunk of HEAD_ROWS rows). The gate_up projection's
rows are taken in the order gate 0, up 0, gate 1, up 1, ... first. Offsets do not depend on P, only
the order of rows inside a projection does.
"""

from typing import Optional

import numpy as np

from . import packed as pk

F32 = np.float32
PROJ = pk.LAYER_PROJ  # order of the codes in a layer blob and of alpha[]
LAYER_VECS = ("attn_norm", "mlp_norm", "g_norm", "lower_bound", "gain_i", "gain_f", "gain_g", "gain_o",
              "gain_gate_up", "gain_down")
HEAD_VECS = ("final_norm", "gain")
N_ALPHA = 8
ARENA_ALIGN = 4096
ROW_GROUP = 12     # hls/include/mmfree_layout.h
HEAD_ROWS = 1536


def pad_rows(rows: int) -> int:
    """Rows of a projection as stored: padded to a multiple of ROW_GROUP."""
    return -(-rows // ROW_GROUP) * ROW_GROUP


def port_order(rows: int, ports: int, chunk: Optional[int] = None) -> np.ndarray:
    """Stored position -> row index (or -1 for a padding row) of a projection of ``rows`` rows on a
    ``ports``-port build: chunks of ``chunk`` rows (whole projection if None), each port-major."""
    if ports < 1 or ROW_GROUP % ports:
        raise ValueError(f"{ports} weight ports: the layout supports port counts dividing {ROW_GROUP}")
    total = pad_rows(rows)
    chunk = total if chunk is None else chunk
    order = np.empty(total, np.int64)
    for c0 in range(0, total, chunk):
        n = min(chunk, total - c0)
        j = np.arange(n)
        # stored position c0 + p * (n / P) + i holds row c0 + i * P + p
        p, i = j // (n // ports), j % (n // ports)
        order[c0 + j] = c0 + i * ports + p
    order[order >= rows] = -1
    return order


def _put_rows(blob: np.ndarray, off: int, codes: np.ndarray, rows: int, rb: int, ports: int,
              chunk: Optional[int] = None) -> None:
    order = port_order(rows, ports, chunk)
    dst = blob[off:off + order.size * rb].reshape(order.size, rb)
    src = np.asarray(codes, np.uint8).reshape(rows, rb)
    keep = order >= 0
    dst[keep] = src[order[keep]]
    dst[~keep] = 0


def pad4(n: int) -> int:
    return (n + 3) & ~3


def vec_bytes(n: int) -> int:
    """Bytes of an x, h row or logits buffer of n floats (padded to 16 bytes)."""
    return 4 * pad4(n)


def layer_layout(d: int, inter: int, packing: str) -> dict:
    """{"codes": {proj: (offset, rows, row_bytes)}, "params": byte offset, "vec": {name: float index
    in params}, "floats": params floats, "bytes": blob bytes} of one layer blob."""
    codes, off = {}, 0
    for p in PROJ:
        rows, k = pk.proj_shape(p, d, inter)
        rb = pk.row_bytes(k, packing)
        codes[p] = (off, rows, rb)
        off += pad_rows(rows) * rb
    vec, idx = {}, N_ALPHA
    for v in LAYER_VECS:
        vec[v] = idx
        idx += pad4(inter if v == "gain_down" else d)
    return {"codes": codes, "params": off, "vec": vec, "floats": idx, "bytes": off + 4 * idx}


def head_layout(d: int, vocab: int, packing: str) -> dict:
    rb = pk.row_bytes(d, packing)
    off = pad_rows(vocab) * rb
    vec = {v: N_ALPHA + i * pad4(d) for i, v in enumerate(HEAD_VECS)}
    floats = N_ALPHA + len(HEAD_VECS) * pad4(d)
    return {"codes": (0, vocab, rb), "params": off, "vec": vec, "floats": floats, "bytes": off + 4 * floats}


def layer_stride(d: int, inter: int, packing: str) -> int:
    """Bytes from one layer blob to the next in the weights arena: the blob rounded up to 4096."""
    return -(-layer_layout(d, inter, packing)["bytes"] // ARENA_ALIGN) * ARENA_ALIGN


def arena_layout(layers: int, d: int, inter: int, vocab: int, packing: str) -> dict:
    """{"stride", "layers": [offset per layer], "head": offset, "bytes": total} of the weights arena."""
    st = layer_stride(d, inter, packing)
    return {"stride": st, "layers": [li * st for li in range(layers)], "head": layers * st,
            "bytes": layers * st + head_layout(d, vocab, packing)["bytes"]}


def state_bytes(layers: int, d: int) -> int:
    """Bytes of the [L, pad4(d)] float32 state buffer."""
    return layers * vec_bytes(d)


def code_bytes_per_token(d: int, layers: int, inter: int, vocab: int, packing: str) -> int:
    """Packed ternary weight bytes the kernel streams per token (layers + lm_head, row and column padding
    included)."""
    lay = layer_layout(d, inter, packing)
    return layers * lay["params"] + head_layout(d, vocab, packing)["params"]


# ----------------------------------------------------------------------------------------------
# filling buffers from a packed model
# ----------------------------------------------------------------------------------------------

def _out(out: Optional[np.ndarray], nbytes: int) -> np.ndarray:
    if out is None:
        return np.zeros(nbytes, np.uint8)
    if out.dtype != np.uint8 or out.size < nbytes:
        raise ValueError(f"blob buffer must be uint8 of at least {nbytes} bytes, got {out.dtype} x {out.size}")
    return out


def pack_layer_blob(model: pk.PackedModel, li: int, out: Optional[np.ndarray] = None, *, ports: int) -> np.ndarray:
    """Layer li of a packed model as a ``ports``-port mmfree_kernel reads it (uint8), into ``out`` (e.g. a
    pynq buffer slice) or a new array."""
    cfg = model.config
    lay = layer_layout(cfg.hidden_size, cfg.intermediate_size, model.packing)
    blob = _out(out, lay["bytes"])
    t, p = model.tensor, f"layers.{li}."
    for proj, (off, rows, rb) in lay["codes"].items():
        codes = np.asarray(t(p + proj + ".codes"), np.uint8).reshape(rows, rb)
        if proj == "gate_up":  # stored gate 0, up 0, gate 1, up 1, ...: a row end's P rows split between the halves
            half = rows // 2
            codes = np.stack([codes[:half], codes[half:]], axis=1).reshape(rows, rb)
        _put_rows(blob, off, codes, rows, rb, ports)
    prm = np.zeros(lay["floats"], F32)
    for i, proj in enumerate(PROJ):
        prm[i] = F32(t(p + proj + ".alpha")[0])
    src = {"attn_norm": p + "attn_norm", "mlp_norm": p + "mlp_norm", "g_norm": p + "g_norm"}
    src.update({"gain_" + q: p + q + ".gain" for q in PROJ})
    for v, idx in lay["vec"].items():
        a = np.asarray(t("lower_bounds")[li] if v == "lower_bound" else t(src[v]), F32)
        prm[idx:idx + a.size] = a
    blob[lay["params"]:lay["bytes"]] = prm.view(np.uint8)
    return blob


def pack_head_blob(model: pk.PackedModel, out: Optional[np.ndarray] = None, *, ports: int) -> np.ndarray:
    """The final norm + lm_head as OP_HEAD of a ``ports``-port build reads it (uint8)."""
    cfg = model.config
    lay = head_layout(cfg.hidden_size, cfg.vocab_size, model.packing)
    blob = _out(out, lay["bytes"])
    off, rows, rb = lay["codes"]
    _put_rows(blob, off, model.tensor("lm_head.codes"), rows, rb, ports, HEAD_ROWS)
    prm = np.zeros(lay["floats"], F32)
    prm[0] = F32(model.tensor("lm_head.alpha")[0])
    for v, name in (("final_norm", "final_norm"), ("gain", "lm_head.gain")):
        a = np.asarray(model.tensor(name), F32)
        prm[lay["vec"][v]:lay["vec"][v] + a.size] = a
    blob[lay["params"]:lay["bytes"]] = prm.view(np.uint8)
    return blob


def pack_arena(model: pk.PackedModel, out: Optional[np.ndarray] = None, *, ports: int) -> np.ndarray:
    """The weights arena (uint8): every layer blob at its stride, zeros between, then the head blob."""
    c = model.config
    lay = arena_layout(c.num_hidden_layers, c.hidden_size, c.intermediate_size, c.vocab_size, model.packing)
    arena = _out(out, lay["bytes"])
    lb = layer_layout(c.hidden_size, c.intermediate_size, model.packing)["bytes"]
    for li, off in enumerate(lay["layers"]):
        pack_layer_blob(model, li, arena[off:off + lb], ports=ports)
        arena[off + lb:off + lay["stride"]] = 0
    pack_head_blob(model, arena[lay["head"]:lay["bytes"]], ports=ports)
    return arena
