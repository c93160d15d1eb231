"""Token generation on any backend: prefill, then decode; greedy or sampled; streamed.

Text in, text out (the model's own tokenizer; the bundled model and emulator by default):

    from mmfree.generate import stream_text, generate_text, Sampling
    for piece in stream_text("The kernel", max_new_tokens=40):
        print(piece, end="", flush=True)
    text = generate_text("The kernel", model="model.safetensors", backend="golden",
                         sampling=Sampling(temperature=0.8, top_k=40, seed=1))

Token ids in, events out:

    from mmfree.backends import make_backend
    from mmfree.generate import Sampling, Generation, generate
    b = make_backend("emu", "model.safetensors")
    gen = Generation(b, prompt_ids=[1, 2, 3], max_new_tokens=32, sampling=Sampling(temperature=0.8, top_k=40, seed=0))
    for ev in gen:                    # streams: ev.token, ev.text (new text, possibly "")
        print(ev.text, end="")
    gen.result.decode_tokens_per_s

The sampling code is the same numpy code for every backend, with a ``numpy.random.Generator``
seeded once per generation: backends whose logits agree bit for bit (emu and golden) give the
same tokens for the same seed. Timings: prefill (the prompt, until the first logits) and decode
(the backend's ``step`` calls after it) are timed separately.
"""

import time
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Sequence

import numpy as np

from .errors import ConfigError


# ---------------------------------------------------------------------------------------------
# sampling
# ---------------------------------------------------------------------------------------------
@dataclass
class Sampling:
    greedy: bool = False
    temperature: float = 1.0
    top_k: int = 0            # 0: off
    top_p: float = 1.0        # 1.0: off
    seed: Optional[int] = None

    def __post_init__(self):
        if not (self.temperature >= 0 and self.temperature < float("inf")):  # NaN fails too
            raise ConfigError(f"temperature must be finite and >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ConfigError(f"top-k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top-p must be in (0, 1], got {self.top_p}")

    @property
    def is_greedy(self) -> bool:
        return self.greedy or self.temperature == 0


GREEDY = Sampling(greedy=True)


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64)
    e = np.exp(z - np.max(z))
    return e / e.sum()


def top_k_mask(logits: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the k largest logits (ties broken by the lower id); k <= 0 or >= V keeps all."""
    v = logits.shape[-1]
    if k <= 0 or k >= v:
        return np.ones(v, bool)
    order = np.argsort(-np.asarray(logits, np.float64), kind="stable")
    mask = np.zeros(v, bool)
    mask[order[:k]] = True
    return mask


def top_p_mask(probs: np.ndarray, p: float) -> np.ndarray:
    """Boolean mask of the smallest set of most probable ids whose total probability reaches p
    (nucleus; the most probable id is always kept)."""
    v = probs.shape[-1]
    if p >= 1.0:
        return np.ones(v, bool)
    order = np.argsort(-np.asarray(probs, np.float64), kind="stable")
    sorted_p = np.asarray(probs, np.float64)[order]
    before = np.cumsum(sorted_p) - sorted_p       # probability of the ids ranked above each one
    keep = before < p
    keep[0] = True
    mask = np.zeros(v, bool)
    mask[order[keep]] = True
    return mask


def sample_probs(logits: np.ndarray, s: Sampling) -> np.ndarray:
    """The distribution sampled from: temperature, then top-k, then top-p (float64, sums to 1)."""
    z = np.asarray(logits, np.float64)
    z = (z - np.max(z)) / float(s.temperature)   # shift first: a tiny temperature gives -inf, never inf - inf
    if s.top_k:
        z = np.where(top_k_mask(z, s.top_k), z, -np.inf)
    probs = softmax(z)
    if s.top_p < 1.0:
        probs = np.where(top_p_mask(probs, s.top_p), probs, 0.0)
        probs /= probs.sum()
    return probs


def sample_token(logits: np.ndarray, rng: Optional[np.random.Generator], s: Sampling) -> int:
    """One token id: argmax when greedy, else one uniform draw from ``rng`` through the CDF."""
    if s.is_greedy:
        return int(np.argmax(logits))
    probs = sample_probs(logits, s)
    cdf = np.cumsum(probs)
    u = rng.random() * cdf[-1]
    return int(min(np.searchsorted(cdf, u, side="right"), probs.size - 1))


# ---------------------------------------------------------------------------------------------
# generation
# ---------------------------------------------------------------------------------------------
@dataclass
class TokenEvent:
    index: int          # 0 for the first new token
    token: int
    text: str           # new text this token completes ("" while a character is incomplete)


@dataclass
class GenerationResult:
    prompt_ids: List[int]
    tokens: List[int] = field(default_factory=list)
    text: str = ""
    stop_reason: str = ""          # "eos" or "max_tokens"
    prefill_s: float = 0.0
    decode_s: float = 0.0
    decode_steps: int = 0

    @property
    def prefill_tokens_per_s(self) -> Optional[float]:
        return len(self.prompt_ids) / self.prefill_s if self.prefill_s > 0 else None

    @property
    def decode_tokens_per_s(self) -> Optional[float]:
        return self.decode_steps / self.decode_s if self.decode_steps and self.decode_s > 0 else None

    def as_dict(self) -> dict:
        return {"tokens": self.tokens, "text": self.text, "prompt_tokens": len(self.prompt_ids),
                "stop_reason": self.stop_reason, "prefill_s": self.prefill_s, "decode_s": self.decode_s,
                "decode_steps": self.decode_steps, "prefill_tokens_per_s": self.prefill_tokens_per_s,
                "decode_tokens_per_s": self.decode_tokens_per_s}


class Generation:
    """An iterator of TokenEvent; ``result`` holds tokens, text and timings (complete after iteration).

    The state is reset before the prompt (``reset=False`` continues from the current state)."""

    def __init__(self, backend, prompt_ids: Sequence[int], max_new_tokens: int = 32,
                 sampling: Optional[Sampling] = None, tokenizer=None, eos_token_id: Optional[int] = -1,
                 reset: bool = True):
        self.backend = backend
        self.sampling = sampling or GREEDY
        self.max_new_tokens = int(max_new_tokens)
        self.tokenizer = tokenizer
        self.eos = backend.eos_token_id if eos_token_id == -1 else eos_token_id
        self.reset = reset
        ids = [int(i) for i in prompt_ids]
        if not ids:
            raise ConfigError("empty prompt: give at least one token")
        v = backend.vocab_size
        bad = [i for i in ids if not 0 <= i < v]
        if bad:
            raise ConfigError(f"prompt token id {bad[0]} outside the model's vocabulary 0..{v - 1}")
        self.result = GenerationResult(prompt_ids=ids)

    def __iter__(self) -> Iterator[TokenEvent]:
        r, s, b = self.result, self.sampling, self.backend
        rng = None if s.is_greedy else np.random.default_rng(s.seed)
        dec = self.tokenizer.stream_decoder() if self.tokenizer is not None else None
        if self.reset:
            b.reset()
        t0 = time.perf_counter()
        logits = b.prefill(r.prompt_ids)
        r.prefill_s = time.perf_counter() - t0
        r.stop_reason = "max_tokens"
        for i in range(self.max_new_tokens):
            if i:
                t0 = time.perf_counter()
                logits = b.step(r.tokens[-1])
                r.decode_s += time.perf_counter() - t0
                r.decode_steps += 1
            tok = sample_token(logits, rng, s)
            r.tokens.append(tok)
            piece = dec.add(tok) if dec is not None else ""
            r.text += piece
            yield TokenEvent(i, tok, piece)
            if self.eos is not None and tok == self.eos:
                r.stop_reason = "eos"
                break
        if dec is not None:
            tail = dec.flush()
            if tail:
                r.text += tail
                yield TokenEvent(len(r.tokens), -1, tail)


def generate(backend, prompt_ids: Sequence[int], max_new_tokens: int = 32, sampling: Optional[Sampling] = None,
             tokenizer=None, **kw) -> GenerationResult:
    """Run a whole generation; returns the GenerationResult."""
    g = Generation(backend, prompt_ids, max_new_tokens, sampling, tokenizer, **kw)
    for _ in g:
        pass
    return g.result


# ---------------------------------------------------------------------------------------------
# text in, text out
# ---------------------------------------------------------------------------------------------
class TextGeneration:
    """Text in, text out: encodes ``prompt`` with the model's tokenizer, generates, and yields the
    new text piece by piece (whole characters only). ``result`` (a GenerationResult, with ``text``
    and the timings) is complete after iteration.

    ``backend``: a backend name ("emu", "golden", "pynq", "torch"; default: pynq on a board, emu
    elsewhere), opened on ``model`` (default: the bundled model) and closed at the end; or an open
    Backend object, which is left open. ``sampling``: a Sampling (default greedy).
    """

    def __init__(self, prompt: str, model=None, backend=None, max_new_tokens: int = 32,
                 sampling: Optional[Sampling] = None, board: Optional[str] = None, stop_at_eos: bool = True):
        if not isinstance(prompt, str):
            raise ConfigError(f"prompt must be text (str), got {type(prompt).__name__}; for token ids use Generation")
        self.prompt, self.model, self.backend = prompt, model, backend
        self.max_new_tokens, self.sampling, self.board = max_new_tokens, sampling, board
        self.stop_at_eos = stop_at_eos
        self.result: Optional[GenerationResult] = None
        self.tokenizer = None

    def __iter__(self) -> Iterator[str]:
        from . import backends as bk
        from .tokenizer import load_tokenizer

        own = not isinstance(self.backend, bk.Backend)
        b = self.backend
        if own:
            b = bk.make_backend(b or bk.default_backend(), self.model or default_model(), board=self.board)
        try:
            tok = load_tokenizer(json_text=b.tokenizer_json)
            if tok.kind == "bytes":
                tok.vocab_size = b.vocab_size
            self.tokenizer = tok
            gen = Generation(b, tok.encode(self.prompt), self.max_new_tokens, self.sampling, tokenizer=tok,
                             eos_token_id=-1 if self.stop_at_eos else None)
            self.result = gen.result
            for ev in gen:
                if ev.text:
                    yield ev.text
        finally:
            if own:
                b.close()


def stream_text(prompt: str, model=None, backend=None, max_new_tokens: int = 32,
                sampling: Optional[Sampling] = None, **kw) -> Iterator[str]:
    """Yield the text generated after ``prompt``, piece by piece (see TextGeneration)::

        for piece in stream_text("The kernel", max_new_tokens=40):
            print(piece, end="", flush=True)
    """
    return iter(TextGeneration(prompt, model, backend, max_new_tokens, sampling, **kw))


def generate_text(prompt: str, model=None, backend=None, max_new_tokens: int = 32,
                  sampling: Optional[Sampling] = None, **kw) -> str:
    """The text generated after ``prompt`` (the prompt itself not included), as one string."""
    return "".join(TextGeneration(prompt, model, backend, max_new_tokens, sampling, **kw))


# ---------------------------------------------------------------------------------------------
# a small random model (demo without the bundled model, measurements)
# ---------------------------------------------------------------------------------------------
DEMO_SHAPE = dict(vocab_size=512, hidden_size=128, num_hidden_layers=2, intermediate_size=352)


def make_random_model(out_path: str, shape: Optional[dict] = None, packing: str = "base3", seed: int = 0,
                      tokenizer_json: Optional[str] = None) -> str:
    """A random HGRNBit (torch, released format) converted to a packed file at out_path (needs torch)."""
    import os
    import tempfile

    import torch

    from .config import HGRNBitConfig
    from .convert import convert
    from .model import HGRNBit

    cfg = HGRNBitConfig(**(shape or DEMO_SHAPE))
    torch.manual_seed(seed)
    m = HGRNBit(cfg)
    m.reset_parameters(0.02)
    with torch.no_grad():
        m.model.lower_bounds.normal_()
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        m.save_pretrained(tmp, dtype=torch.bfloat16)
        if tokenizer_json:
            with open(os.path.join(tmp, "tokenizer.json"), "w", encoding="utf-8") as f:
                f.write(tokenizer_json)
        convert(tmp, out_path, packing=packing, progress=False, log=None)
    return out_path


# ---------------------------------------------------------------------------------------------
# `mmfree generate` (the parser is registered in mmfree.cli)
# ---------------------------------------------------------------------------------------------
import os as _os
import sys as _sys

_PKG = _os.path.dirname(_os.path.abspath(__file__))
BUNDLED_MODEL = _os.path.join(_PKG, "data", "bundled.safetensors")
DEMO_MODEL = _os.path.join(_os.path.dirname(_os.path.dirname(_PKG)), "build", "demo", "random.safetensors")


def default_model(log=None) -> str:
    """The bundled model; until it exists, the small random model `make demo` builds (said on stderr)."""
    if _os.path.exists(BUNDLED_MODEL):
        return BUNDLED_MODEL
    if _os.path.exists(DEMO_MODEL):
        if log:
            log(f"the bundled model {BUNDLED_MODEL} does not exist yet; using the random demo model {DEMO_MODEL}")
        return DEMO_MODEL
    raise ConfigError(f"no --model given and the bundled model {BUNDLED_MODEL} does not exist yet; pass --model, "
                      f"or make a small random one: python -m mmfree.generate --make-random-model {DEMO_MODEL}")


CLI_DESCRIPTION = """\
Generate text from a packed model, streamed to stdout as it is made. Backends: pynq (the FPGA, on a
board), emu (the same driver on the HLS kernels compiled for this host: bit-exact with the board,
but the speed is this CPU's), golden (the numpy spec), torch (the float reference; needs a Hugging
Face checkpoint folder). The last line gives prefill and decode speed in tokens/s, labelled with the
backend that produced them. Decoding is greedy unless a sampling option is given."""

CLI_EPILOG = """\
examples:
  mmfree generate --prompt "The kernel"
  mmfree generate --prompt "The kernel" --temperature 0.8 --top-k 40 --seed 1
  mmfree generate --model mmfree-370m.safetensors --backend golden --prompt "The capital of France is"
"""


def add_arguments(p) -> None:
    from . import cliargs as ca
    from .backends import BACKENDS
    from .cli import add_model
    add_model(p, positional_alias=False,
              help="packed model file (for --backend torch: a Hugging Face checkpoint folder); "
                   "default: the bundled 25M-parameter model")
    p.add_argument("--backend", choices=BACKENDS, help="default: pynq on a board, emu elsewhere")
    p.add_argument("--board", type=ca.board_name, help="board of the overlay (real or emulated); "
                                                        "default: the board detected, else kv260")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-p", "--prompt", type=ca.text, default="Hello", help="prompt text, encoded with the model's tokenizer")
    g.add_argument("--prompt-ids", type=ca.token_ids, metavar="IDS",
                   help="comma-separated token ids instead of --prompt (bypasses the tokenizer)")
    p.add_argument("-n", "--max-new-tokens", type=ca.int_range(0, ca.MAX_NEW_TOKENS), default=32, metavar="N",
                   help=f"stop after N new tokens (at most {ca.MAX_NEW_TOKENS}), or earlier at end-of-sequence")
    s = p.add_argument_group("sampling (greedy when none is given)")
    s.add_argument("--greedy", action="store_true", help="argmax decoding; cannot be combined with the options below")
    s.add_argument("--temperature", type=ca.float_range(0, 1e4), metavar="T",
                   help="sample at temperature T (0 = greedy); default 1 when another sampling option is given")
    s.add_argument("--top-k", type=ca.int_range(0, 2**31 - 1), default=0, metavar="K",
                   help="sample among the K most likely tokens (0 = off)")
    s.add_argument("--top-p", type=ca.float_range(0, 1, lo_open=True), default=1.0, metavar="P",
                   help="nucleus sampling: the most likely tokens up to total probability P (1 = off)")
    s.add_argument("--seed", type=ca.int_range(0, ca.MAX_SEED), metavar="S",
                   help="seed of the sampler (same seed, same tokens on emu and golden); default: fresh entropy")
    p.add_argument("--no-eos", action="store_true", help="do not stop at the end-of-sequence token")
    p.add_argument("--byte-tokenizer", action="store_true",
                   help="use the byte-level fallback tokenizer (ids 0..255 = bytes) instead of the model's")
    p.add_argument("--overlay", metavar="BIT", help="pynq backend: overlay .bit file (its .hwh next to it); "
                                                    "default: the installed overlay for the board")
    p.add_argument("--timeout", type=ca.float_range(0, ca.MAX_TIMEOUT_S, lo_open=True), default=5.0, metavar="SECONDS",
                   help="seconds before a kernel call counts as hung (emu, pynq)")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end instead of streaming text")


def _parse_ids(text: str) -> List[int]:
    """Comma-separated ids (kept for callers of the old API; the CLI parses with cliargs.token_ids)."""
    import argparse

    from .cliargs import token_ids
    try:
        return token_ids(text)
    except argparse.ArgumentTypeError as e:
        raise ConfigError(f"--prompt-ids {e}") from None


def _label(name: str) -> str:
    return {"pynq": "measured on the board",
            "emu": "measured here: the emulator on this host's CPU, not FPGA speed",
            "golden": "measured here: the numpy spec on this host's CPU",
            "torch": "measured here: the torch reference on this host's CPU"}.get(name, "measured here")


def run_cli(args) -> int:
    import json

    from . import backends as bk
    from .cli import resolve_model
    from .cliargs import safe_stream
    from .tokenizer import load_tokenizer

    def log(msg):
        print(f"mmfree generate: {msg}", file=_sys.stderr, flush=True)

    sampling_given = (args.temperature is not None or args.top_k or args.top_p < 1.0 or args.seed is not None)
    if args.greedy and sampling_given:
        raise ConfigError("--greedy cannot be combined with --temperature, --top-k, --top-p or --seed")
    sampling = GREEDY
    if sampling_given:
        sampling = Sampling(temperature=1.0 if args.temperature is None else args.temperature, top_k=args.top_k,
                            top_p=args.top_p, seed=args.seed)
    name = args.backend
    if name is None:
        name = bk.default_backend()
        log(f"backend {name} ({'board detected' if name == 'pynq' else 'no board detected: emulator'})")
    model = resolve_model(args, log)
    kw = {"timeout_s": args.timeout} if name in ("emu", "pynq") else {}
    if name == "pynq":
        kw["bitfile"] = args.overlay
    backend = bk.make_backend(name, model, board=args.board, **kw)
    try:
        tok = load_tokenizer(json_text=backend.tokenizer_json, force_bytes=args.byte_tokenizer)
        if tok.kind == "bytes":
            tok.vocab_size = backend.vocab_size
        log(f"tokenizer: {tok.describe()}")
        if tok.kind == "bytes" and backend.vocab_size > 256:
            log(f"note: the model has {backend.vocab_size} ids; ids 256 and above print nothing with the "
                "byte-level fallback, so the text may be garbled or missing")
        if _os.path.abspath(str(model)) == BUNDLED_MODEL:
            log("model: the bundled 25M-parameter HGRNBit trained on Debian software documentation "
                "(docs/model-card.md): fluent-looking, meaningless text")
        ids = args.prompt_ids if args.prompt_ids is not None else tok.encode(args.prompt)
        gen = Generation(backend, ids, args.max_new_tokens, sampling, tokenizer=tok,
                         eos_token_id=None if args.no_eos else -1)
        if args.json:
            for _ in gen:
                pass
            r = gen.result.as_dict()
            r["backend"] = name
            r["label"] = _label(name)
            r["sampling"] = "greedy" if sampling.is_greedy else vars(sampling)
            print(json.dumps(r))
            return 0
        out = _sys.stdout
        if args.prompt_ids is None:
            out.write(safe_stream(args.prompt))
        for ev in gen:
            if ev.text:
                out.write(safe_stream(ev.text))
                out.flush()
        r = gen.result
        out.write("\n")
        pre = f"{r.prefill_tokens_per_s:.2f} tokens/s" if r.prefill_tokens_per_s else "n/a"
        dec = f"{r.decode_tokens_per_s:.2f} tokens/s" if r.decode_tokens_per_s else "n/a"
        out.write(f"[{name}] prefill: {len(r.prompt_ids)} tokens, {pre}; decode: {len(r.tokens)} new "
                  f"tokens ({r.decode_steps} steps), {dec}; stop: {r.stop_reason} ({_label(name)})\n")
        out.flush()
        return 0
    finally:
        backend.close()


if __name__ == "__main__":  # python -m mmfree.generate --make-random-model OUT
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "--make-random-model":
        print(make_random_model(sys.argv[2]))
    else:
        sys.exit("usage: python -m mmfree.generate --make-random-model OUT.safetensors")
