"""``mmfree perplexity``: validation perplexity of a model on a text file, on any backend.

    mmfree perplexity python/mmfree/data/bundled.safetensors data/corpus/val.txt --backend golden
    mmfree perplexity runs/bundled data/corpus/val.txt --backend torch

The text is tokenized with the model's tokenizer exactly as training tokenized it
(``mmfree.train.tokenize_corpus``: documents as ``<s> ... </s>``), cut into consecutive windows of
``seq_len + 1`` tokens that overlap by one token, and every token after a window's first is
scored once, each window from a fresh recurrent state. The golden backend batches a window's
tokens per layer (bit-identical to step-by-step decode) and needs numpy only.
"""

import json
import math
import sys
import time

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def window_logits(backend, window: np.ndarray) -> np.ndarray:
    """Logits [T, V] for window[:-1] from a fresh state."""
    backend.reset()
    if hasattr(backend, "forward_all"):
        return backend.forward_all(window[:-1].tolist())
    return np.stack([backend.step(int(t)) for t in window[:-1]])


class _Golden:
    name = "golden"

    def __init__(self, path):
        from .golden import GoldenModel
        self.g = GoldenModel(path)

    def reset(self):
        self.g.reset()

    def forward_all(self, ids):
        return self.g.forward(ids)


class _Torch:
    name = "torch"

    def __init__(self, hf_dir):
        import torch
        from .model import HGRNBit
        self.torch = torch
        self.m = HGRNBit.from_pretrained(hf_dir).eval()

    def reset(self):
        pass

    def forward_all(self, ids):
        with self.torch.no_grad():
            return self.m(self.torch.tensor([ids]), parallel_scan=False)[0].numpy()


def perplexity(backend, windows: np.ndarray, progress: bool = True) -> dict:
    nll, n, t0 = 0.0, 0, time.time()
    bar = None
    if progress:
        try:
            from tqdm import tqdm
            bar = tqdm(total=len(windows), desc=f"perplexity ({backend.name})", unit="window")
        except ImportError:
            pass
    for w in windows:
        lp = log_softmax(window_logits(backend, w))
        nll -= float(lp[np.arange(len(w) - 1), w[1:]].sum())
        n += len(w) - 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(ppl=f"{math.exp(nll / n):.3f}")
    if bar is not None:
        bar.close()
    return {"backend": backend.name, "windows": int(len(windows)), "tokens": n, "nll_per_token": nll / n,
            "perplexity": math.exp(nll / n), "seconds": time.time() - t0}


def add_arguments(p):
    p.add_argument("model", help="packed model (golden) or Hugging Face checkpoint folder (torch)")
    p.add_argument("text", help="text file: documents separated by a line holding only \\x1e (.txt, .txt.xz)")
    p.add_argument("--backend", choices=("golden", "torch"), default="golden")
    p.add_argument("--tokenizer", help="tokenizer.json (default: the model's)")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--max-windows", type=int, default=None, help="score only the first N windows")
    p.add_argument("--cache-dir", default=None, help="where the tokenized text is cached (default: beside the text)")
    p.add_argument("--json", action="store_true")


def run_cli(args) -> int:
    import os
    import tempfile
    from .errors import ConfigError
    from .train import TokenData, tokenize_corpus

    tok_path = args.tokenizer
    if args.backend == "golden":
        from . import packed as pk
        m = pk.load(args.model)
        if tok_path is None:
            if not m.tokenizer_json:
                raise ConfigError(f"{args.model} holds no tokenizer; give --tokenizer")
            fd, tok_path = tempfile.mkstemp(suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(m.tokenizer_json)
        backend = _Golden(m)
    else:
        if tok_path is None:
            tok_path = os.path.join(args.model, "tokenizer.json")
        backend = _Torch(args.model)
    tokens = tokenize_corpus(args.text, tok_path, cache_dir=args.cache_dir)
    windows = TokenData(tokens).windows(args.seq_len, args.max_windows)
    r = perplexity(backend, windows, progress=not args.json)
    r.update(model=args.model, text=args.text, seq_len=args.seq_len, label="measured here (CPU)")
    print(json.dumps(r) if args.json else
          f"{r['backend']}: perplexity {r['perplexity']:.3f} over {r['tokens']} tokens "
          f"({r['windows']} windows of {args.seq_len}), {r['seconds']:.0f} s", file=sys.stdout)
    return 0
