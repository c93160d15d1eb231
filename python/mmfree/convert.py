"""Hugging Face checkpoint folder (released HGRNBit format) -> packed model file.

Streams: each output tensor is computed from memory-mapped source tensors and written before the
next is read; large weight matrices are quantized in row chunks. Peak memory stays near one
source tensor, never two full copies of the model. numpy only (torch not needed).
"""

import os
import time

import numpy as np

from . import packed as pk
from .errors import FormatError, MMFreeError
from .fileio import check_output_path
from .hf import Checkpoint
from .safetensors_io import MAX_HEADER, f32_to_bf16

CHUNK_ELEMS = 1 << 24  # rows per chunk are chosen to stay near 16M elements (64 MB of float32)


def _row_chunks(w, to32):
    """(first row, float32 rows) of a [N, K] source tensor, about CHUNK_ELEMS at a time."""
    rows = max(1, CHUNK_ELEMS // max(1, w.shape[1]))
    for r in range(0, w.shape[0], rows):
        yield r, to32(w[r:r + rows])


def weight_alpha(chunks, size: int) -> np.float32:
    """alpha = mean|W| accumulated in float64, rounded to float32, clamped at 1e-5 (as the released code)."""
    total = sum(float(np.abs(c.astype(np.float64)).sum()) for _, c in chunks)
    return np.float32(max(np.float32(total / size), np.float32(1e-5)))


def ternary_codes(w32: np.ndarray, alpha: np.float32) -> np.ndarray:
    """clamp(round_half_even(W * (1/alpha)), -1, 1) in float32, as int8."""
    s = np.float32(1.0) / np.float32(alpha)
    return np.clip(np.rint(np.asarray(w32, np.float32) * s), -1, 1).astype(np.int8)


def _pack_tensor(ck: Checkpoint, name: str, packing: str) -> tuple:
    """(packed codes uint8 [N, row_bytes], alpha float32) for a source weight, two chunked passes.
    NaN or infinity in the source is a FormatError naming the tensor."""
    w = ck.raw(name)
    bf16 = ck.dtype(name) == "BF16"

    def to32(a):
        a = (np.asarray(a, np.uint16).astype(np.uint32) << 16).view(np.float32) if bf16 else np.asarray(a, np.float32)
        if not np.all(np.isfinite(a)):
            raise FormatError(f"{ck.folder}: tensor {name!r} holds NaN or infinity")
        return a
    alpha = weight_alpha(_row_chunks(w, to32), w.size)
    out = np.empty((w.shape[0], pk.row_bytes(w.shape[1], packing)), dtype=np.uint8)
    for r, rows in _row_chunks(w, to32):
        out[r:r + len(rows)] = pk.pack(ternary_codes(rows, alpha), packing)
    return out, alpha


def lower_bound_table(raw: np.ndarray) -> np.ndarray:
    """softmax over layers, cumsum, minus the first row (computed in float64, stored float32)."""
    z = raw.astype(np.float64)
    e = np.exp(z - z.max(axis=0, keepdims=True))
    sm = e / e.sum(axis=0, keepdims=True)
    cs = np.cumsum(sm, axis=0)
    return (cs - cs[0]).astype(np.float32)


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
        return tqdm(total=total, desc=desc, unit="tensor")
    except ImportError:  # tqdm is a host extra; the board may not have it
        return None


def convert(hf_dir: str, out_path: str, packing: str = "base3", progress: bool = True,
            log=print) -> dict:
    """Convert a checkpoint folder to a packed file. Returns a summary dict.

    Safe by construction: every input is checked (hf.Checkpoint; NaN/Inf in any source tensor is a
    FormatError), an output equal to or inside the input is refused, the file is written to a unique
    temporary file beside ``out_path``, checked with ``packed.load`` (every check, the integrity
    hash too) and only then renamed over ``out_path``. On any failure the temporary file is removed
    and an existing ``out_path`` is left as it was."""
    if packing not in pk.PACKINGS:
        raise FormatError(f"unknown packing {packing!r}, expected one of {pk.PACKINGS}")
    t0 = time.time()
    ck = Checkpoint(hf_dir)
    check_output_path(out_path, inputs=ck.input_files, input_dirs=[hf_dir])
    cfg = ck.config
    tok = ck.read_tokenizer(MAX_HEADER // 2)
    specs = pk.tensor_specs(cfg, packing)
    writer = pk.open_writer(out_path, cfg, packing, tok, source=os.path.basename(os.path.abspath(hf_dir)))
    bar = _progress(len(specs), f"convert ({packing})", progress)
    f32 = ck.f32_finite
    loaded = []

    def validate(tmp):
        """The finished temporary file, through the loader users run (every check, the hash too)."""
        try:
            loaded.append(pk.load(tmp))
        except MMFreeError as e:
            raise type(e)(f"{out_path}: the converted model fails its own checks, so it was not written "
                          f"({str(e).replace(tmp, 'the new file')})") from None

    errstate = np.errstate(over="ignore", invalid="ignore")  # overflow in a folded gain: the loader rejects it
    errstate.__enter__()
    try:
        for name, _, _ in specs:
            if name == "embeddings":
                src = "model.embeddings.weight"
                arr = np.asarray(ck.raw(src)) if ck.dtype(src) == "BF16" else f32_to_bf16(f32(src))
                arr = np.asarray(arr, dtype=np.uint16)
                if not pk.bf16_finite(arr).all():
                    raise FormatError(f"{hf_dir}: tensor {src!r} holds NaN or infinity")
                writer.write(name, arr)
            elif name == "lower_bounds":
                if cfg.use_lower_bound:
                    writer.write(name, lower_bound_table(f32("model.lower_bounds")))
                else:
                    writer.write(name, np.zeros((cfg.num_hidden_layers, cfg.hidden_size), np.float32))
            elif name == "final_norm":
                writer.write(name, f32("model.norm.weight"))
            elif name.startswith("lm_head."):
                field = name.split(".")[1]
                if field == "codes":
                    codes, alpha = _pack_tensor(ck, "lm_head.weight", packing)
                    writer.write(name, codes)
                elif field == "alpha":
                    writer.write(name, np.array([alpha], np.float32))
                else:
                    writer.write(name, f32("model.norm.weight") * f32("lm_head.norm.weight"))
            else:  # layers.N.*
                _, li, rest = name.split(".", 2)
                src = f"model.layers.{li}."
                if rest in ("attn_norm", "mlp_norm"):
                    writer.write(name, f32(src + rest + ".weight"))
                elif rest == "g_norm":
                    writer.write(name, f32(src + "attn.g_norm.weight"))
                else:
                    proj, field = rest.split(".")
                    module = {"i": "attn.i_proj", "f": "attn.f_proj", "g": "attn.g_proj", "o": "attn.o_proj",
                              "gate_up": "mlp.gate_proj", "down": "mlp.down_proj"}[proj]
                    if field == "codes":
                        codes, alpha = _pack_tensor(ck, src + module + ".weight", packing)
                        writer.write(name, codes)
                    elif field == "alpha":
                        writer.write(name, np.array([alpha], np.float32))
                    else:  # gain: the BitLinear's own norm gain, folded with the block norm before it
                        gamma = f32(src + module + ".norm.weight")
                        if proj in ("i", "f", "g"):
                            gamma = f32(src + "attn_norm.weight") * gamma
                        elif proj == "gate_up":
                            gamma = f32(src + "mlp_norm.weight") * gamma
                        writer.write(name, np.asarray(gamma, np.float32))
            if bar is not None:
                bar.update(1)
        writer.close(validate)
    except BaseException:
        writer.abort()
        raise
    finally:
        errstate.__exit__(None, None, None)
        if bar is not None:
            bar.close()
    model = loaded[0]
    summary = {
        "out": out_path, "packing": packing, "file_bytes": model.file_size,
        "code_bytes": model.nbytes(".codes"), "weights": model.n_weights(),
        "bits_per_weight": model.bits_per_weight(), "seconds": time.time() - t0,
    }
    if log:
        log(f"wrote {out_path}: {summary['file_bytes'] / 1e6:.2f} MB, {summary['weights'] / 1e6:.2f} M ternary "
            f"weights at {summary['bits_per_weight']:.3f} bits/weight ({packing}), {summary['seconds']:.1f} s")
    return summary
