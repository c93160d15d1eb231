"""``mmfree perplexity``: validation perplexity of a model on a text file, on any backend.

    mmfree perplexity                                  # bundled model, shipped held-out text (golden)
    mmfree perplexity --model runs/bundled --text data/corpus/val.txt --backend torch

The text is tokenized with the model's tokenizer exactly as training tokenized it
(``mmfree.train.tokenize_corpus``: documents as ``<s> ... </s>``), cut into consecutive windows of
``seq_len + 1`` tokens that overlap by one token, and every token after a window's first is
scored once, each window from a fresh recurrent state. The golden backend batches a window's
tokens per layer (bit-identical to step-by-step decode) and needs numpy only.
"""

import argparse
import json
import lzma
import math
import os
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


HELDOUT_TEXT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "heldout.txt")

CLI_DESCRIPTION = """\
Perplexity (exp of the mean negative log-likelihood per token; lower is better) of a model on a text
file. The text is tokenized with the model's tokenizer as training did (each document as
<s> ... </s>), cut into consecutive windows of --seq-len tokens, each scored from a fresh recurrent
state. Backends: golden (the hardware's integer arithmetic in numpy, on a packed file) or torch (the
float reference, on a Hugging Face checkpoint folder). Measured here, on this host's CPU.

The default text is the package's data/heldout.txt: 79.6 KB, the 4 held-out (validation) documents
of the bundled model's public-domain sources (The Jargon File 4.4.7, Ambrose Bierce's The Devil's
Dictionary; docs/model-card.md). Tokenized text goes to a temporary folder that is removed at the
end, unless --cache-dir keeps it."""

CLI_EPILOG = """\
examples:
  mmfree perplexity --max-windows 8          # bundled model, shipped held-out text, first 8 windows
  mmfree perplexity --model mmfree-370m.safetensors --text my-validation.txt
  mmfree perplexity --model runs/bundled --backend torch
"""


def add_arguments(p):
    from . import cliargs as ca
    from .cli import add_model
    add_model(p, help="packed model file (golden), or Hugging Face checkpoint folder (torch); "
                      "default: the bundled 25M-parameter model")
    p.add_argument("text_pos", nargs="?", metavar="TEXT", help=argparse.SUPPRESS)  # older positional spelling
    p.add_argument("-t", "--text", metavar="PATH",
                   help="UTF-8 text file (.txt, .txt.xz, .txt.gz; documents separated by a line holding only "
                        "\\x1e); default: the shipped held-out text data/heldout.txt")
    p.add_argument("--backend", choices=("golden", "torch"), default="golden", help="backend that scores the text")
    p.add_argument("--tokenizer", metavar="JSON", help="tokenizer.json; default: the model's own")
    p.add_argument("--seq-len", type=ca.int_range(1, ca.MAX_SEQ_LEN), default=512, metavar="TOKENS",
                   help="tokens scored per window")
    p.add_argument("--max-windows", type=ca.int_range(1, None), default=None, metavar="N",
                   help="score only the first N windows (default: all)")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="keep the tokenized text in DIR and reuse it next time (default: a temporary folder, removed)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run_cli(args) -> int:
    import shutil
    import tempfile

    from .cli import resolve_model
    from .cliargs import safe
    from .errors import ConfigError
    from .train import TokenData, tokenize_corpus

    text_pos = getattr(args, "text_pos", None)
    if text_pos is not None and args.text is not None:
        raise ConfigError("the text is given twice: give --text only")
    text = args.text if args.text is not None else text_pos if text_pos is not None else HELDOUT_TEXT
    model = resolve_model(args)
    if not os.path.isfile(text):
        raise ConfigError(f"{text}: no such text file")
    if args.cache_dir is not None and os.path.exists(args.cache_dir) and not os.path.isdir(args.cache_dir):
        raise ConfigError(f"--cache-dir {args.cache_dir}: exists and is not a folder")
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        raise ConfigError("perplexity needs the `tokenizers` library (pip install tokenizers)") from None
    tmp = tempfile.mkdtemp(prefix="mmfree-perplexity-")
    try:
        tok_path = args.tokenizer
        if args.backend == "golden":
            from . import packed as pk
            if os.path.isdir(model):
                raise ConfigError(f"{model} is a folder: the golden backend scores a packed model file "
                                  "(a checkpoint folder runs with --backend torch)")
            m = pk.load(model)
            if tok_path is None:
                if not m.tokenizer_json:
                    raise ConfigError(f"{model} holds no tokenizer; give --tokenizer")
                tok_path = os.path.join(tmp, "tokenizer.json")
                with open(tok_path, "w", encoding="utf-8") as f:
                    f.write(m.tokenizer_json)
            backend = _Golden(m)
        else:
            if not os.path.isdir(model):
                raise ConfigError(f"the torch backend needs a Hugging Face checkpoint folder, got {model!r}")
            if tok_path is None:
                tok_path = os.path.join(model, "tokenizer.json")
            backend = _Torch(model)
        if not os.path.isfile(tok_path):
            raise ConfigError(f"{tok_path}: no such tokenizer file")
        try:
            from tokenizers import Tokenizer
            vocab = Tokenizer.from_file(tok_path).get_vocab_size()
        except Exception as e:  # the library raises bare Exception on bad JSON
            raise ConfigError(f"{tok_path}: not a tokenizer.json the `tokenizers` library reads ({e})") from None
        if vocab > backend_vocab(backend):
            raise ConfigError(f"the tokenizer has {vocab} ids but the model's vocabulary has {backend_vocab(backend)}")
        try:
            tokens = tokenize_corpus(text, tok_path, cache_dir=args.cache_dir or tmp)
        except UnicodeDecodeError as e:
            raise ConfigError(f"{text}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        except (EOFError, ValueError, lzma.LZMAError) as e:  # a damaged .xz/.gz
            raise ConfigError(f"{text}: cannot read it ({e})") from None
        data = TokenData(tokens) if os.path.getsize(tokens) else None
        n = len(data) if data is not None else 0
        if n < args.seq_len + 1:
            raise ConfigError(f"{text}: {n} tokens, fewer than one window of --seq-len {args.seq_len} + 1")
        windows = data.windows(args.seq_len, args.max_windows)
        r = perplexity(backend, windows, progress=not (args.json or args.quiet))
        del data
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    r.update(model=model, text=text, seq_len=args.seq_len, label="measured here (this host's CPU)")
    print(json.dumps(r) if args.json else
          f"{r['backend']}: perplexity {r['perplexity']:.3f} ({r['nll_per_token']:.4f} nats/token) over "
          f"{r['tokens']} tokens ({r['windows']} windows of {args.seq_len} tokens) of {safe(text)}; "
          f"{r['seconds']:.0f} s measured here (this host's CPU)", file=sys.stdout)
    return 0


def backend_vocab(backend) -> int:
    return (backend.g if isinstance(backend, _Golden) else backend.m).config.vocab_size
