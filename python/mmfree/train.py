"""Quantization-aware training of small HGRNBit (MatMul-free) language models.

What the released code does, at small scale: ternary absmean weights and int8 absmax activations
in every BitLinear of the forward, straight-through gradients to the latent float weights (the
model in ``mmfree.model`` does this whenever gradients are enabled), AdamW, cosine learning rate
with linear warm-up, bf16 autocast on CUDA. One GPU, or several through ``torchrun`` (DDP: the
script reads WORLD_SIZE / RANK / LOCAL_RANK), or the CPU for tests.

Data: local text files (``.txt``, optionally ``.xz`` / ``.gz``) in which documents are separated by
a line holding only the ASCII record separator ``\\x1e`` (what ``scripts/make_corpus.py`` writes),
or ``.jsonl`` with a ``"text"`` field per line. A byte-level BPE tokenizer (``<unk>``=0, ``<s>``=1,
``</s>``=2) is trained on the training text if the ``--tokenizer`` file does not exist; every
document is stored as ``<s> tokens </s>`` in a uint16 (uint32 for vocabularies over 65535) token
file, cached next to the text (or in ``--cache-dir``) and opened as a numpy memmap.

Outputs in ``--out``: the checkpoint in the released Hugging Face format (``config.json``,
``model.safetensors`` bf16, ``tokenizer.json``, ``generation_config.json``) that ``mmfree convert``
takes, ``training_state.safetensors`` beside it (fp32 weights, optimizer, step, RNG: resume with
``--resume``; tensors in safetensors, everything else as JSON in its metadata: loading it never
runs code, unlike a pickle), ``losses.csv`` (step, tokens, train_loss, val_loss, lr, elapsed_s), ``loss.png``
and ``train_log.json`` (arguments, throughput, final numbers).

Command line (``python -m mmfree.train ...`` or ``main(argv)``), see ``build_parser``.
"""

import argparse
import csv
import hashlib
import json
import lzma
import gzip
import math
import os
import random
import sys
import time
from typing import Iterator, List, Optional, Sequence

import numpy as np

DOC_SEP = "\x1e"
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]  # ids 0, 1, 2 as in the released config
BOS_ID, EOS_ID = 1, 2
STATE_FILE = "training_state.safetensors"
LEGACY_STATE_FILE = "training_state.pt"  # pickles of earlier versions: never loaded (unpickling runs code)
STATE_FORMAT = "mmfree-training-state"
STATE_VERSION = 1

__all__ = ["main", "train", "build_parser", "read_documents", "train_tokenizer", "tokenize_corpus",
           "TokenData", "lr_at", "torch_perplexity", "generate", "plot_losses"]


# ============================================================================== text + tokenizer
def _open_text(path: str):
    if path.endswith(".xz"):
        return lzma.open(path, "rt", encoding="utf-8")
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, "r", encoding="utf-8")


def read_documents(path: str) -> Iterator[str]:
    """Documents of one corpus file (see the module docstring for the formats)."""
    base = path[:-3] if path.endswith((".xz", ".gz")) else path
    with _open_text(path) as f:
        if base.endswith(".jsonl"):
            for line in f:
                line = line.strip()
                if line:
                    text = json.loads(line).get("text", "")
                    if text:
                        yield text
            return
        cur: List[str] = []
        for line in f:
            if line.rstrip("\n") == DOC_SEP:
                doc = "".join(cur).strip("\n")
                if doc:
                    yield doc
                cur = []
            else:
                cur.append(line)
        doc = "".join(cur).strip("\n")
        if doc:
            yield doc


def train_tokenizer(paths: Sequence[str], vocab_size: int, out_path: str, max_chars: Optional[int] = None):
    """Byte-level BPE (``tokenizers``) with ``<unk>``=0, ``<s>``=1, ``</s>``=2; ``encode`` prepends ``<s>``.

    ``vocab_size`` counts the 3 special tokens and the 256 byte symbols. ``max_chars`` caps the
    training text (taken from the start of each file in turn). Returns the Tokenizer.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)

    def docs():
        seen = 0
        for p in paths:
            for d in read_documents(p):
                yield d
                seen += len(d)
                if max_chars and seen >= max_chars:
                    return

    tok.train_from_iterator(docs(), trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", BOS_ID)])
    for i, s in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    from .fileio import atomic_path
    with atomic_path(out_path) as tmp:
        tok.save(tmp)
    return tok


def _file_digest(path: str, nbytes: int = 1 << 20) -> str:
    st = os.stat(path)
    h = hashlib.sha256(f"{st.st_size}".encode())
    with open(path, "rb") as f:
        h.update(f.read(nbytes))
        if st.st_size > nbytes:
            f.seek(-nbytes, os.SEEK_END)
            h.update(f.read(nbytes))
    return h.hexdigest()[:12]


def tokenize_corpus(text_path: str, tokenizer_path: str, cache_dir: Optional[str] = None,
                    batch_docs: int = 2000) -> str:
    """Tokenize ``text_path`` once into ``<name>.<hash>.u16`` (or ``.u32``) + ``.json`` metadata;
    return the token file's path (reused when it exists). Each document is ``<s> ... </s>``."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_path)
    vocab = tok.get_vocab_size()
    dtype = np.uint16 if vocab <= 65535 else np.uint32
    key = _file_digest(text_path) + _file_digest(tokenizer_path)
    cache_dir = cache_dir or os.path.dirname(os.path.abspath(text_path))
    os.makedirs(cache_dir, exist_ok=True)
    out = os.path.join(cache_dir, f"{os.path.basename(text_path)}.{key[:16]}.{'u16' if dtype == np.uint16 else 'u32'}")
    if os.path.exists(out) and os.path.exists(out + ".json"):
        return out
    from .fileio import atomic_open, write_json
    n_docs = n_bytes = n_tokens = 0
    with atomic_open(out, "wb") as f:
        batch: List[str] = []

        def flush():
            nonlocal n_tokens
            encs = tok.encode_batch(batch, add_special_tokens=False)
            arr = np.concatenate([np.asarray([BOS_ID] + e.ids + [EOS_ID], dtype=dtype) for e in encs])
            f.write(arr.tobytes())
            n_tokens += arr.size

        for doc in read_documents(text_path):
            batch.append(doc)
            n_docs += 1
            n_bytes += len(doc.encode("utf-8"))
            if len(batch) >= batch_docs:
                flush()
                batch = []
        if batch:
            flush()
    meta = {"text": os.path.abspath(text_path), "tokenizer": os.path.abspath(tokenizer_path),
            "vocab_size": vocab, "dtype": np.dtype(dtype).name, "documents": n_docs,
            "text_bytes": n_bytes, "tokens": n_tokens, "bos_id": BOS_ID, "eos_id": EOS_ID}
    write_json(out + ".json", meta, indent=2)
    return out


def token_meta(tokens_path: str) -> dict:
    with open(tokens_path + ".json", "r", encoding="utf-8") as f:
        return json.load(f)


class TokenData:
    """A token file as a memmap, with random training windows and fixed validation windows."""

    def __init__(self, path: str):
        self.path = path
        self.meta = token_meta(path) if os.path.exists(path + ".json") else {}
        dtype = np.uint32 if path.endswith(".u32") else np.uint16
        self.tokens = np.memmap(path, dtype=dtype, mode="r")

    def __len__(self):
        return int(self.tokens.size)

    def random_batch(self, rng: np.random.Generator, batch: int, seq_len: int) -> np.ndarray:
        """[batch, seq_len + 1] int64 windows starting at uniform random offsets."""
        hi = len(self) - seq_len - 1
        if hi <= 0:
            raise ValueError(f"{self.path}: {len(self)} tokens, fewer than seq_len + 2 = {seq_len + 2}")
        starts = rng.integers(0, hi + 1, size=batch)
        return np.stack([np.asarray(self.tokens[s:s + seq_len + 1], dtype=np.int64) for s in starts])

    def windows(self, seq_len: int, max_windows: Optional[int] = None) -> np.ndarray:
        """Consecutive windows of seq_len + 1 tokens overlapping by one token: every token after
        the first is predicted exactly once (the tail shorter than a window is left out)."""
        n = (len(self) - 1) // seq_len
        if max_windows is not None:
            n = min(n, max_windows)
        if n <= 0:
            raise ValueError(f"{self.path}: too few tokens for one window of {seq_len + 1}")
        idx = np.arange(n)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
        return np.asarray(self.tokens[: n * seq_len + 1], dtype=np.int64)[idx]


# ============================================================================== schedule
def lr_at(step: int, max_steps: int, lr: float, warmup_steps: int, min_lr_ratio: float = 0.1) -> float:
    """Linear warm-up from lr/warmup to lr over ``warmup_steps``, then cosine to ``min_lr_ratio * lr``
    at ``max_steps`` (``step`` counts optimizer steps from 0)."""
    if warmup_steps > 0 and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    span = max(1, max_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


# ============================================================================== evaluation
def _nll_windows(model, windows: np.ndarray, batch_size: int, device, parallel_scan: bool, autocast: bool):
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(windows), batch_size):
            w = torch.from_numpy(windows[i:i + batch_size]).to(device)
            ctx = torch.autocast("cuda", dtype=torch.bfloat16) if autocast else _nullctx()
            with ctx:
                logits = model(w[:, :-1], parallel_scan=parallel_scan)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1),
                                   reduction="sum")
            total += float(loss)
            count += w[:, 1:].numel()
    return total, count


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def torch_perplexity(model_dir: str, val_tokens_path: str, seq_len: int = 512, batch_size: int = 16,
                     device: Optional[str] = None, max_windows: Optional[int] = None,
                     parallel_scan: bool = False) -> dict:
    """Validation perplexity of a checkpoint folder with the float torch reference.

    Loads ``HGRNBit.from_pretrained(model_dir)`` in float32 (no autocast), runs the full forward
    over consecutive windows of ``seq_len`` predicted tokens of the token file (each window starts
    from a zero recurrent state; the sequential scan, the released recurrent order, unless
    ``parallel_scan``), and returns ``{"ppl", "nll", "tokens", "windows", "bits_per_byte"}``
    (bits per byte only when the token file's metadata has the text size and the whole file
    was evaluated).
    """
    import torch
    from .model import HGRNBit

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = HGRNBit.from_pretrained(model_dir, device=device).eval()
    data = TokenData(val_tokens_path)
    win = data.windows(seq_len, max_windows)
    total, count = _nll_windows(model, win, batch_size, device, parallel_scan, autocast=False)
    nll = total / count
    out = {"ppl": math.exp(nll), "nll": nll, "tokens": count, "windows": int(len(win)), "seq_len": seq_len,
           "device": str(device)}
    full = (len(data) - 1) // seq_len
    if data.meta.get("text_bytes") and len(win) == full:
        # tokens that were not scored (the tail) are few; scale bytes by the scored fraction
        frac = count / max(1, len(data) - 1)
        out["bits_per_byte"] = total / math.log(2) / (data.meta["text_bytes"] * frac)
    return out


def generate(model, tokenizer, prompt: str, max_new_tokens: int = 64, temperature: float = 0.0,
             top_k: int = 0, top_p: float = 1.0, seed: int = 0) -> str:
    """Text continuation with the recurrent ``step`` of the torch reference. ``temperature`` 0 is
    greedy. The prompt is encoded with the tokenizer's ``<s>`` prefix; stops at ``</s>``."""
    import torch

    dev = model.model.norm.weight.device
    ids = tokenizer.encode(prompt).ids
    g = torch.Generator(device="cpu").manual_seed(seed)
    state = model.init_state(1)
    logits = None
    for t in ids:
        logits, state = model.step(torch.tensor([t], device=dev), state)
    out: List[int] = []
    for _ in range(max_new_tokens):
        lg = logits[0].float().cpu()
        if temperature <= 0:
            nxt = int(lg.argmax())
        else:
            lg = lg / temperature
            if top_k:
                kth = torch.topk(lg, top_k).values[-1]
                lg = torch.where(lg < kth, torch.full_like(lg, -float("inf")), lg)
            probs = torch.softmax(lg, -1)
            if top_p < 1.0:
                sp, si = torch.sort(probs, descending=True)
                keep = (sp.cumsum(0) - sp) < top_p
                probs = torch.zeros_like(probs).scatter(0, si[keep], sp[keep])
                probs = probs / probs.sum()
            nxt = int(torch.multinomial(probs, 1, generator=g))
        if nxt == EOS_ID:
            break
        out.append(nxt)
        logits, state = model.step(torch.tensor([nxt], device=dev), state)
    return tokenizer.decode(out)


# ============================================================================== plotting
def read_losses(csv_path: str) -> List[dict]:
    with open(csv_path, "r", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def plot_losses(csv_path: str, png_path: str, title: str = ""):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_losses(csv_path)
    tr = [(float(r["tokens"]) / 1e6, float(r["train_loss"])) for r in rows if r["train_loss"]]
    va = [(float(r["tokens"]) / 1e6, float(r["val_loss"])) for r in rows if r["val_loss"]]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    if tr:
        ax.plot(*zip(*tr), lw=1, label="train (batch mean)")
    if va:
        ax.plot(*zip(*va), "o-", ms=3, lw=1.2, label="validation")
    ax.set_xlabel("tokens seen (millions)")
    ax.set_ylabel("cross-entropy (nats/token)")
    if tr:
        lo = min(v for _, v in tr + va)
        ax.set_ylim(max(0.0, lo - 0.2), min(max(v for _, v in tr + va), lo + 5.0))
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    from .fileio import atomic_path
    try:
        with atomic_path(png_path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)


# ============================================================================== training
CLI_DESCRIPTION = """\
Quantization-aware training of a small HGRNBit (MatMul-free) model from local text, as the released
code trains: ternary weights and int8 activations in the forward pass, straight-through gradients.
Writes a Hugging Face checkpoint folder that `mmfree convert` packs. Needs torch (`make venv`); one
GPU, several through torchrun, or the CPU.

example:
  mmfree train --train-data train.txt --val-data val.txt --out runs/small --max-steps 200 --device cpu"""


def add_arguments(ap) -> None:
    """The training options (``mmfree train`` and ``python -m mmfree.train``)."""
    from . import cliargs as ca
    pos = ca.int_range(1, None)
    nonneg = ca.int_range(0, None)
    d = ap.add_argument_group("data")
    d.add_argument("--train-data", nargs="+", required=True, metavar="PATH",
                   help="training text file(s) (.txt[.xz|.gz] with \\x1e document separators, or .jsonl)")
    d.add_argument("--val-data", nargs="*", default=[], metavar="PATH", help="validation text file(s)")
    d.add_argument("--tokenizer", default=None, metavar="JSON",
                   help="tokenizer.json to use; trained on --train-data if the file does not exist "
                        "(default: <out>/tokenizer.json)")
    d.add_argument("--vocab-size", type=ca.int_range(260, 1 << 20), default=4096, metavar="IDS",
                   help="BPE vocabulary size when training a tokenizer")
    d.add_argument("--tokenizer-max-chars", type=pos, default=30_000_000, metavar="CHARS",
                   help="characters of training text used to train the tokenizer")
    d.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="where token files go (default: next to each text file)")
    m = ap.add_argument_group("model")
    m.add_argument("--hidden-size", type=ca.int_range(8, 65536), default=512, metavar="D", help="hidden size d")
    m.add_argument("--layers", type=ca.int_range(1, 1024), default=6, metavar="L", help="number of layers")
    m.add_argument("--intermediate-size", type=ca.int_range(8, 1 << 20), default=None, metavar="I",
                   help="MLP width (default: the released rule 256*ceil(int(8d/3)/256))")
    o = ap.add_argument_group("optimization")
    o.add_argument("--seq-len", type=ca.int_range(1, ca.MAX_SEQ_LEN), default=512, metavar="TOKENS",
                   help="tokens per training window")
    o.add_argument("--batch-size", type=pos, default=32, metavar="SEQS", help="sequences per micro-batch per process")
    o.add_argument("--grad-accum", type=pos, default=1, metavar="STEPS", help="micro-batches per optimizer step")
    o.add_argument("--max-steps", type=pos, default=None, metavar="STEPS",
                   help="optimizer steps (default 1000; on --resume the saved run's)")
    o.add_argument("--time-budget", type=ca.float_range(0, None, lo_open=True), default=None, metavar="SECONDS",
                   help="shrink --max-steps once, early, so the run ends within this wall time")
    o.add_argument("--lr", type=ca.float_range(0, 10, lo_open=True), default=3e-3, help="peak learning rate")
    o.add_argument("--min-lr-ratio", type=ca.float_range(0, 1), default=0.1, metavar="FRACTION",
                   help="final learning rate as a fraction of --lr (cosine decay)")
    o.add_argument("--warmup-steps", type=nonneg, default=100, metavar="STEPS", help="linear warm-up steps")
    o.add_argument("--weight-decay", type=ca.float_range(0, 10), default=0.1, metavar="WD", help="AdamW weight decay (matrices only)")
    o.add_argument("--beta1", type=ca.float_range(0, 1, hi_open=True), default=0.9, metavar="B1", help="AdamW beta1")
    o.add_argument("--beta2", type=ca.float_range(0, 1, hi_open=True), default=0.95, metavar="B2", help="AdamW beta2")
    o.add_argument("--grad-clip", type=ca.float_range(0, None), default=1.0, metavar="NORM",
                   help="gradient norm clip (0 = off)")
    o.add_argument("--seed", type=ca.int_range(0, 2**32 - 1), default=1234, metavar="S", help="random seed")
    r = ap.add_argument_group("run")
    r.add_argument("--out", required=True, metavar="DIR",
                   help="output folder: HF checkpoint + training state + losses.csv + loss.png")
    r.add_argument("--resume", action="store_true", help="continue from the training state in --out")
    r.add_argument("--device", default=None, type=ca.text,
                   help="cpu | cuda | cuda:N (default: cuda when available; under torchrun cuda:LOCAL_RANK)")
    r.add_argument("--compile", action="store_true", help="torch.compile the model (falls back to eager if compiling fails)")
    r.add_argument("--no-autocast", action="store_true", help="no bf16 autocast on CUDA")
    r.add_argument("--log-every", type=pos, default=10, metavar="STEPS", help="print the loss every N steps")
    r.add_argument("--eval-every", type=nonneg, default=200, metavar="STEPS",
                   help="validation loss every N steps (0 = only at the end)")
    r.add_argument("--eval-windows", type=pos, default=64, metavar="N",
                   help="validation windows for the periodic validation loss")
    r.add_argument("--save-every", type=nonneg, default=1000, metavar="STEPS",
                   help="checkpoint every N steps (0 = only at the end)")
    r.add_argument("--final-eval", action="store_true", help="torch perplexity over the whole validation split at the end")
    r.add_argument("--threads", type=ca.int_range(1, 4096), default=None, metavar="N",
                   help="torch CPU threads (default: torch's choice)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    from .cliargs import Parser
    ap = Parser(prog="mmfree train", description=CLI_DESCRIPTION)
    add_arguments(ap)
    return ap


def run_cli(args) -> int:
    """``mmfree train``: the parsed options to ``train``; a missing input file is a one-line error."""
    from .errors import ConfigError
    kw = {k: v for k, v in vars(args).items() if k not in ("func", "command")}
    for p in list(kw["train_data"]) + list(kw["val_data"]):
        if not os.path.isfile(p):
            raise ConfigError(f"{p}: no such text file")
    if kw["tokenizer"] and os.path.exists(kw["tokenizer"]) and not os.path.isfile(kw["tokenizer"]):
        raise ConfigError(f"--tokenizer {kw['tokenizer']}: not a file")
    train(**kw)
    return 0


def _dist_env():
    ws = int(os.environ.get("WORLD_SIZE", "1"))
    return ws, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))


# ============================================================================== training state
# One safetensors file: tensors "model/<name>", "optim/<param index>/<key>", "rng/torch" (uint8),
# "rng/numpy" and "rng/python" (uint32); metadata "format", "version", "integrity" (sha256, as in
# packed files: docs/format.md) and "state" (JSON: config,
# step, tokens, max_steps, elapsed, tokenizer_path, args, final, the optimizer's param_groups and
# non-tensor state, the scalar parts of the RNG states). Written atomically (mmfree.fileio), read
# with the strict numpy reader: no pickle anywhere.

def _torch_to_np(t):
    import torch
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16), "BF16"
    return t.numpy(), None


def save_training_state(path: str, state: dict) -> None:
    """Write ``state`` (the dict ``train`` keeps: config, model, optimizer, step, tokens, max_steps,
    elapsed, tokenizer_path, rng, args, final) atomically as safetensors + JSON."""
    import torch
    from .safetensors_io import write_file

    tensors, specs, bf16 = {}, {}, set()

    def put(name, t):
        a, dt = _torch_to_np(t)
        tensors[name] = a
        if dt == "BF16":
            bf16.add(name)

    for k, v in state["model"].items():
        put(f"model/{k}", v)
    opt = state["optimizer"]
    opt_scalars = {}
    for pid, st in opt["state"].items():
        scal = {}
        for key, v in st.items():
            if isinstance(v, torch.Tensor):
                put(f"optim/{int(pid)}/{key}", v)
            else:
                scal[key] = v
        opt_scalars[str(int(pid))] = scal
    rng = state["rng"]
    py_ver, py_int, py_gauss = rng["python"]
    tensors["rng/python"] = np.asarray(py_int, dtype=np.uint32)
    np_name, np_keys, np_pos, np_has_gauss, np_cached = rng["numpy"]
    tensors["rng/numpy"] = np.asarray(np_keys, dtype=np.uint32)
    tensors["rng/torch"] = rng["torch"].detach().cpu().numpy().astype(np.uint8)
    meta = {k: state[k] for k in ("config", "step", "tokens", "max_steps", "elapsed", "tokenizer_path", "args", "final")}
    meta["optimizer"] = {"param_groups": [dict(g) for g in opt["param_groups"]], "scalars": opt_scalars}
    meta["rng"] = {"python": [py_ver, py_gauss], "numpy": [np_name, int(np_pos), int(np_has_gauss), float(np_cached)]}
    meta["bf16"] = sorted(bf16)
    text = json.dumps(meta, default=lambda o: list(o) if isinstance(o, tuple) else str(o))

    def check(tmp):
        load_training_state(tmp)

    from .safetensors_io import write_file
    write_file(path, tensors, {"format": STATE_FORMAT, "version": str(STATE_VERSION), "state": text}, validate=check,
               integrity_key="integrity", bf16=bf16)


def load_training_state(path: str) -> dict:
    """Read a training state written by ``save_training_state``; FormatError for anything else
    (a pickle included: it is refused by the reader, never unpickled)."""
    import torch
    from .errors import FormatError
    from .safetensors_io import SafeTensorsFile, strict_json_loads

    st = SafeTensorsFile(path)
    md = st.metadata
    if md.get("format") != STATE_FORMAT:
        raise FormatError(f"{path}: not an mmfree training state (metadata format={md.get('format')!r})")
    if md.get("version") != str(STATE_VERSION):
        raise FormatError(f"{path}: training state version {md.get('version')!r}, this mmfree reads {STATE_VERSION}")
    if st.integrity_digest("integrity") != md.get("integrity"):
        raise FormatError(f"{path}: training state integrity check failed (the file is corrupt or was edited)")
    meta = strict_json_loads(md.get("state", ""), f"{path}: training state metadata")

    def bad(what):
        return FormatError(f"{path}: training state: {what}")

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    if not isinstance(meta, dict):
        raise bad("metadata is not a JSON object")
    for key, ok in (("config", lambda v: isinstance(v, dict)), ("step", lambda v: is_int(v) and v >= 0),
                    ("tokens", lambda v: is_int(v) and v >= 0),
                    ("max_steps", lambda v: v is None or (is_int(v) and v >= 0)),
                    ("elapsed", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)),
                    ("tokenizer_path", lambda v: isinstance(v, str)), ("args", lambda v: isinstance(v, dict)),
                    ("final", lambda v: isinstance(v, bool)), ("optimizer", lambda v: isinstance(v, dict)),
                    ("rng", lambda v: isinstance(v, dict)), ("bf16", lambda v: isinstance(v, list))):
        if key not in meta or not ok(meta[key]):
            raise bad(f"field {key!r} missing or of the wrong type")
    optm = meta["optimizer"]
    groups, scalars = optm.get("param_groups"), optm.get("scalars")
    if not isinstance(groups, list) or not all(isinstance(g, dict) and isinstance(g.get("params"), list)
                                               for g in groups) or not isinstance(scalars, dict):
        raise bad("optimizer param_groups/scalars malformed")
    rng = meta["rng"]
    pyr, npr = rng.get("python"), rng.get("numpy")
    if not (isinstance(pyr, list) and len(pyr) == 2 and is_int(pyr[0])
            and (pyr[1] is None or isinstance(pyr[1], float))):
        raise bad("python RNG state malformed")
    if not (isinstance(npr, list) and len(npr) == 4 and npr[0] == "MT19937" and is_int(npr[1]) and is_int(npr[2])
            and isinstance(npr[3], float)):
        raise bad("numpy RNG state malformed")

    def tensor(name):
        a = np.array(st.get(name))
        if name in meta["bf16"]:
            return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(a)

    model, ostate = {}, {}
    for name in st.names:
        if name.startswith("model/"):
            model[name[6:]] = tensor(name)
        elif name.startswith("optim/"):
            parts = name.split("/")
            if len(parts) != 3 or not parts[1].isdigit():
                raise bad(f"unexpected tensor {name!r}")
            ostate.setdefault(int(parts[1]), {})[parts[2]] = tensor(name)
        elif name not in ("rng/python", "rng/numpy", "rng/torch"):
            raise bad(f"unexpected tensor {name!r}")
    for pid, scal in scalars.items():
        if not pid.isdigit() or not isinstance(scal, dict):
            raise bad("optimizer scalars malformed")
        ostate.setdefault(int(pid), {}).update(scal)
    for name, n, dt in (("rng/python", 625, "U32"), ("rng/numpy", 624, "U32"), ("rng/torch", None, "U8")):
        if name not in st:
            raise bad(f"missing tensor {name!r}")
        got_dt, shape = st.info(name)
        if got_dt != dt or len(shape) != 1 or (n is not None and shape[0] != n):
            raise bad(f"tensor {name!r} has dtype {got_dt} shape {list(shape)}")
    py_int = tuple(int(v) for v in st.get("rng/python"))
    groups = [dict(g, betas=tuple(g["betas"])) if isinstance(g.get("betas"), list) else g for g in groups]
    return {"config": meta["config"], "model": model,
            "optimizer": {"state": ostate, "param_groups": groups},
            "step": meta["step"], "tokens": meta["tokens"], "max_steps": meta["max_steps"],
            "elapsed": float(meta["elapsed"]), "tokenizer_path": meta["tokenizer_path"], "args": meta["args"],
            "final": meta["final"],
            "rng": {"python": (pyr[0], py_int, pyr[1]),
                    "numpy": ("MT19937", np.array(st.get("rng/numpy"), dtype=np.uint32), npr[1], npr[2], npr[3]),
                    "torch": torch.from_numpy(np.array(st.get("rng/torch"), dtype=np.uint8))}}


def _restore(what: str, path: str, fn):
    """Apply one part of a loaded state; its errors (shapes, RNG sizes, ...) become FormatError."""
    from .errors import FormatError
    try:
        fn()
    except (RuntimeError, ValueError, TypeError, KeyError, IndexError, OverflowError) as e:
        raise FormatError(f"{path}: training state does not fit this run ({what}: {e})") from None


def train(train_data: Sequence[str], out: str, val_data: Sequence[str] = (), tokenizer: Optional[str] = None,
          vocab_size: int = 4096, tokenizer_max_chars: int = 30_000_000, cache_dir: Optional[str] = None,
          hidden_size: int = 512, layers: int = 6, intermediate_size: Optional[int] = None,
          seq_len: int = 512, batch_size: int = 32, grad_accum: int = 1, max_steps: Optional[int] = None,
          time_budget: Optional[float] = None, lr: float = 3e-3, min_lr_ratio: float = 0.1,
          warmup_steps: int = 100, weight_decay: float = 0.1, beta1: float = 0.9, beta2: float = 0.95,
          grad_clip: float = 1.0, seed: int = 1234, resume: bool = False, device: Optional[str] = None,
          compile: bool = False, no_autocast: bool = False, log_every: int = 10, eval_every: int = 200,
          eval_windows: int = 64, save_every: int = 1000, final_eval: bool = False,
          threads: Optional[int] = None, no_progress: bool = False, _stop_at: Optional[int] = None) -> dict:
    """Train (or resume) and write the checkpoint to ``out``. Returns a summary dict (also written
    to ``out/train_log.json``). Arguments mirror the command-line options of ``build_parser``."""
    import torch
    import torch.nn.functional as F
    from .config import HGRNBitConfig
    from .model import HGRNBit

    world, rank, local_rank = _dist_env()
    ddp = world > 1
    if threads:
        torch.set_num_threads(threads)
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if ddp:
        import torch.distributed as dist
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    master = rank == 0
    os.makedirs(out, exist_ok=True)
    state_path = os.path.join(out, STATE_FILE)
    saved = None
    if resume:
        from .errors import FormatError
        if not os.path.exists(state_path):
            legacy = os.path.join(out, LEGACY_STATE_FILE)
            if os.path.exists(legacy):
                raise FormatError(f"--resume: {legacy} is a pickle written by an earlier mmfree; it is not loaded, "
                                  f"because unpickling a file can run arbitrary code. Start a new run (without --resume), "
                                  f"or resume only from a {STATE_FILE} written by this version")
            raise FormatError(f"--resume: no {state_path}")
        saved = load_training_state(state_path)

    # ---------------------------------------------------------------- tokenizer + token files
    tok_path = tokenizer or (saved["tokenizer_path"] if saved else None) or os.path.join(out, "tokenizer.json")
    if master and not os.path.exists(tok_path):
        t0 = time.time()
        train_tokenizer(train_data, vocab_size, tok_path, tokenizer_max_chars)
        print(f"[train] tokenizer: trained vocab {vocab_size} in {time.time() - t0:.1f}s -> {tok_path}", flush=True)
    if ddp:
        dist.barrier()
    tok_files, val_files = [], []
    for group, dst in ((train_data, tok_files), (val_data, val_files)):
        for p in group:
            if master:
                t0 = time.time()
                tp = tokenize_corpus(p, tok_path, cache_dir)
                mt = token_meta(tp)
                print(f"[train] tokens: {p}: {mt['documents']} docs, {mt['text_bytes']} bytes, {mt['tokens']} tokens "
                      f"({time.time() - t0:.1f}s) -> {tp}", flush=True)
            if ddp:
                dist.barrier()
            dst.append(tokenize_corpus(p, tok_path, cache_dir))  # cached: returns at once
    from tokenizers import Tokenizer
    vocab = Tokenizer.from_file(tok_path).get_vocab_size()
    train_sets = [TokenData(p) for p in tok_files]
    val_sets = [TokenData(p) for p in val_files]
    weights = np.array([len(s) for s in train_sets], dtype=np.float64)
    weights /= weights.sum()

    # ---------------------------------------------------------------- model + optimizer
    if saved:
        from .errors import ConfigError, FormatError
        try:
            cfg = HGRNBitConfig.from_dict(saved["config"])
        except ConfigError as e:
            raise FormatError(f"{state_path}: training state config: {e}") from None
    else:
        cfg = HGRNBitConfig(vocab_size=vocab, hidden_size=hidden_size, num_hidden_layers=layers,
                            intermediate_size=intermediate_size, max_position_embeddings=seq_len)
    torch.manual_seed(seed)
    model = HGRNBit(cfg)
    model.tokenizer_file = tok_path
    if saved:
        _restore("model weights", state_path, lambda: model.load_state_dict(saved["model"]))
    model.to(dev)
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (decay if p.dim() >= 2 and not n.endswith("lower_bounds") else no_decay).append(p)
    fused = dev.type == "cuda"
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(beta1, beta2),
                            eps=1e-8, **({"fused": True} if fused else {}))
    step, tokens_seen, elapsed_before = 0, 0, 0.0
    if saved:
        _restore("optimizer", state_path, lambda: opt.load_state_dict(saved["optimizer"]))
        step, tokens_seen, elapsed_before = saved["step"], saved["tokens"], saved["elapsed"]
        max_steps = saved.get("max_steps") if max_steps is None else max_steps
        _restore("python RNG", state_path, lambda: random.setstate(saved["rng"]["python"]))
        _restore("numpy RNG", state_path, lambda: np.random.set_state(saved["rng"]["numpy"]))
        _restore("torch RNG", state_path, lambda: torch.set_rng_state(saved["rng"]["torch"]))
    if max_steps is None:
        max_steps = 1000
    n_params = sum(p.numel() for p in model.parameters())

    fwd = model
    compiled = False
    if compile:
        try:
            fwd = torch.compile(model)
            compiled = True
        except Exception as e:  # pragma: no cover - depends on the platform
            print(f"[train] torch.compile unavailable ({e}); eager", flush=True)
    if ddp:
        from torch.nn.parallel import DistributedDataParallel as DDP
        fwd = DDP(fwd, device_ids=[dev.index] if dev.type == "cuda" else None)
    use_autocast = dev.type == "cuda" and not no_autocast
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if use_autocast else _nullctx()

    tokens_per_step = batch_size * seq_len * grad_accum * world
    val_win = [s.windows(seq_len, eval_windows) for s in val_sets]

    def val_loss():
        if not val_win:
            return None
        # Evaluate a fresh float32 copy of the weights without autocast, as torch_perplexity does,
        # so the figure does not depend on the training module's compile/autocast state. (The first
        # bundled run's flat validation loss came from BitLinear's ternary-code cache going stale
        # under the fused AdamW; mmfree.model fixes that, see docs/model-card.md.)
        evm = HGRNBit(cfg)
        evm.load_state_dict({k: v.detach().clone() for k, v in model.state_dict().items()})
        evm.to(dev).eval()
        tot = cnt = 0.0
        for w in val_win:
            t, c = _nll_windows(evm, w, batch_size, dev, parallel_scan=True, autocast=False)
            tot += t
            cnt += c
        del evm
        return tot / cnt

    # ---------------------------------------------------------------- logging files
    csv_path = os.path.join(out, "losses.csv")
    fields = ["step", "tokens", "train_loss", "val_loss", "lr", "elapsed_s"]
    from .fileio import atomic_open, write_json
    csv_rows: List[dict] = []

    def write_csv():
        with atomic_open(csv_path, "w", newline="") as f:  # the whole log, atomically: never a torn row
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(csv_rows)

    if master:
        if saved and os.path.exists(csv_path):
            try:
                csv_rows = [{k: r.get(k, "") for k in fields} for r in read_losses(csv_path)
                            if str(r.get("step", "")).isdigit() and int(r["step"]) <= step]
            except (OSError, UnicodeDecodeError, csv.Error):
                csv_rows = []
        write_csv()

    def log_row(**kw):
        if master:
            csv_rows.append(kw)
            write_csv()

    def save(final=False):
        if not master:
            return
        model.save_pretrained(out)  # config.json, model.safetensors (bf16), tokenizer.json
        save_training_state(state_path, {
            "config": cfg.to_dict(), "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": opt.state_dict(), "step": step, "tokens": tokens_seen, "max_steps": max_steps,
            "elapsed": elapsed_before + (time.time() - t_start), "tokenizer_path": os.path.abspath(tok_path),
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
            "args": run_args, "final": final})

    run_args = dict(train_data=list(train_data), val_data=list(val_data), hidden_size=cfg.hidden_size,
                    layers=cfg.num_hidden_layers, intermediate_size=cfg.intermediate_size, vocab=vocab,
                    seq_len=seq_len, batch_size=batch_size, grad_accum=grad_accum, world_size=world, lr=lr,
                    min_lr_ratio=min_lr_ratio, warmup_steps=warmup_steps, weight_decay=weight_decay,
                    betas=[beta1, beta2], grad_clip=grad_clip, seed=seed, compile=compiled, autocast=use_autocast,
                    device=str(dev))
    if master:
        print(f"[train] model: d={cfg.hidden_size} L={cfg.num_hidden_layers} I={cfg.intermediate_size} V={vocab} "
              f"params={n_params / 1e6:.2f}M; {tokens_per_step} tokens/step; device {dev}; world {world}; "
              f"start step {step}", flush=True)

    # ---------------------------------------------------------------- loop
    model.train()
    t_start = time.time()
    if step == 0 and master:
        v = val_loss()
        log_row(step=0, tokens=0, train_loss="", val_loss=f"{v:.5f}" if v is not None else "",
                lr=f"{lr_at(0, max_steps, lr, warmup_steps, min_lr_ratio):.6g}", elapsed_s="0.0")
    t_eval = time.time() - t_start
    pbar = None
    if master and not no_progress:
        from tqdm import tqdm
        pbar = tqdm(total=max_steps, initial=step, dynamic_ncols=True, mininterval=2.0, file=sys.stderr)
    calib_at = (step + 10, step + 30)  # measure step time between these (after compile warm-up)
    t_calib = None
    run_loss, run_n, t_log, tok_log = 0.0, 0, time.time(), tokens_seen
    last_val = None
    interrupted = False
    while step < max_steps:
        cur_lr = lr_at(step, max_steps, lr, warmup_steps, min_lr_ratio)
        for g in opt.param_groups:
            g["lr"] = cur_lr
        loss_acc = torch.zeros((), device=dev)
        for micro in range(grad_accum):
            rng = np.random.default_rng([seed, rank, step, micro])
            si = int(rng.choice(len(train_sets), p=weights)) if len(train_sets) > 1 else 0
            xb = torch.from_numpy(train_sets[si].random_batch(rng, batch_size, seq_len)).to(dev, non_blocking=True)
            sync = (not ddp) or micro == grad_accum - 1
            ctx = _nullctx() if sync else fwd.no_sync()
            with ctx:
                try:
                    with autocast():
                        logits = fwd(xb[:, :-1], parallel_scan=True)
                except Exception as e:
                    if not (compiled and not ddp):
                        raise
                    print(f"[train] compiled forward failed ({type(e).__name__}: {e}); falling back to eager", flush=True)
                    fwd, compiled = model, False
                    run_args["compile"] = False
                    with autocast():
                        logits = fwd(xb[:, :-1], parallel_scan=True)
                loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), xb[:, 1:].reshape(-1))
                (loss / grad_accum).backward()
            loss_acc += loss.detach() / grad_accum
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        tokens_seen += tokens_per_step
        run_loss = run_loss + loss_acc  # a device tensor: no host sync per step
        run_n += 1

        # one-off: fit max_steps into the time budget
        if time_budget and step == calib_at[0]:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t_calib = time.time()
        if time_budget and step == calib_at[1] and t_calib is not None:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            per_step = (time.time() - t_calib) / (calib_at[1] - calib_at[0])
            left = time_budget - (time.time() - t_start) - 20.0  # final save + eval margin
            evals_per_step = (t_eval / eval_every) if eval_every else 0.0
            fit = step + int(left / (per_step + evals_per_step))
            new_max = max(step + 1, min(max_steps, fit))
            if ddp:
                tt = torch.tensor([new_max], device=dev)
                dist.broadcast(tt, 0)
                new_max = int(tt.item())
            if master:
                print(f"\n[train] {per_step * 1000:.0f} ms/step ({tokens_per_step / per_step:,.0f} tokens/s): "
                      f"max_steps {max_steps} -> {new_max} for the {time_budget:.0f}s budget", flush=True)
            max_steps = new_max
            if pbar is not None:
                pbar.total = max_steps

        if step % log_every == 0 or step == max_steps:
            run_loss = float(run_loss)
            if not math.isfinite(run_loss):
                raise FloatingPointError(f"training loss is {run_loss} at step {step}")
            now = time.time()
            tps = (tokens_seen - tok_log) / max(1e-9, now - t_log)
            vl = None
            if master and ((eval_every and step % eval_every == 0) or step == max_steps):
                te = time.time()
                vl = val_loss()
                t_eval = time.time() - te
                last_val = vl
            if master:
                log_row(step=step, tokens=tokens_seen, train_loss=f"{run_loss / run_n:.5f}",
                        val_loss=f"{vl:.5f}" if vl is not None else "", lr=f"{cur_lr:.6g}",
                        elapsed_s=f"{elapsed_before + now - t_start:.1f}")
                if pbar is not None:
                    pbar.set_postfix(loss=f"{run_loss / run_n:.3f}", val=f"{last_val:.3f}" if last_val else "-",
                                     tok_s=f"{tps:,.0f}", lr=f"{cur_lr:.2e}", refresh=False)
            run_loss, run_n, t_log, tok_log = 0.0, 0, time.time(), tokens_seen
        if pbar is not None:
            pbar.update(1)
        if save_every and step % save_every == 0 and step < max_steps:
            save()
        if _stop_at is not None and step >= _stop_at:  # tests: simulate an interruption after a save
            interrupted = True
            break
    if pbar is not None:
        pbar.close()
    train_time = time.time() - t_start
    if interrupted:
        if ddp:
            dist.destroy_process_group()
        return {"step": step, "tokens": tokens_seen, "interrupted": True}
    save(final=True)
    summary = {"step": step, "tokens": tokens_seen, "params": n_params, "train_time_s": train_time,
               "elapsed_total_s": elapsed_before + train_time, "final_val_loss_windows": last_val,
               "tokens_per_s": (tokens_seen - (saved["tokens"] if saved else 0)) / max(1e-9, train_time),
               "args": run_args, "config": cfg.to_dict(), "checkpoint": os.path.abspath(out)}
    if dev.type == "cuda":
        summary["gpu"] = torch.cuda.get_device_name(dev)
        summary["max_memory_gb"] = torch.cuda.max_memory_allocated(dev) / 1e9
    if master:
        try:
            plot_losses(csv_path, os.path.join(out, "loss.png"),
                        f"HGRNBit d={cfg.hidden_size} L={cfg.num_hidden_layers} V={vocab}, {tokens_seen / 1e6:.0f}M tokens")
        except Exception as e:  # pragma: no cover - plotting must not lose a run
            print(f"[train] loss plot failed: {e}", flush=True)
        if final_eval and val_files:
            summary["val"] = [dict(file=p, **torch_perplexity(out, p, seq_len=seq_len, batch_size=batch_size,
                                                             device=str(dev))) for p in val_files]
            for v in summary["val"]:
                print(f"[train] torch perplexity {v['file']}: {v['ppl']:.3f} over {v['tokens']} tokens"
                      + (f", {v['bits_per_byte']:.4f} bits/byte" if "bits_per_byte" in v else ""), flush=True)
        write_json(os.path.join(out, "train_log.json"), summary, indent=2, default=str)
        print(f"[train] done: step {step}, {tokens_seen / 1e6:.1f}M tokens, {train_time:.0f}s -> {out}", flush=True)
    if ddp:
        dist.barrier()
        dist.destroy_process_group()
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m mmfree.train ARGS`` (torchrun too): the same parser and error handling as ``mmfree train``."""
    from .cli import main as cli_main
    return cli_main(["train"] + list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
