"""Token generation on any backend: prefill, then decode; greedy or sampled; streamed.

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
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
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
    z = np.asarray(logits, np.float64) / float(s.temperature)
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


def add_arguments(p) -> None:
    p.add_argument("--model", help="packed model file (torch backend: Hugging Face checkpoint folder); "
                                   "default: the bundled model")
    p.add_argument("--backend", choices=("pynq", "emu", "golden", "torch"),
                   help="default: pynq on a board, emu elsewhere")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--prompt", help="prompt text (default 'Hello')")
    g.add_argument("--prompt-ids", help="comma-separated token ids, bypassing the tokenizer")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--greedy", action="store_true", help="argmax decoding (the default without sampling options)")
    p.add_argument("--temperature", type=float, help="sample at this temperature")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k most likely tokens (0: off)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling threshold (1: off)")
    p.add_argument("--seed", type=int, help="seed of the sampler (numpy Generator)")
    p.add_argument("--no-eos", action="store_true", help="do not stop at the end-of-sequence token")
    p.add_argument("--byte-tokenizer", action="store_true", help="use the byte-level fallback tokenizer")
    p.add_argument("--board", help="board name of boards.json (default: detected, else kv260)")
    p.add_argument("--overlay", help="pynq backend: overlay .bit (with its .hwh next to it)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds before a kernel call counts as hung")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of streaming text")


def _parse_ids(text: str) -> List[int]:
    try:
        ids = [int(t) for t in text.replace(" ", "").split(",") if t != ""]
    except ValueError:
        raise ConfigError(f"--prompt-ids must be comma-separated integers, got {text!r}") from None
    if not ids:
        raise ConfigError("--prompt-ids is empty")
    return ids


def run_cli(args) -> int:
    import json

    from . import backends as bk
    from .tokenizer import load_tokenizer

    def log(msg):
        print(f"mmfree generate: {msg}", file=_sys.stderr, flush=True)

    sampling = Sampling(temperature=1.0 if args.temperature is None else args.temperature, top_k=args.top_k,
                        top_p=args.top_p, seed=args.seed)   # validates every option
    sampling_given = args.temperature is not None or args.top_k or args.top_p < 1.0 or args.seed is not None
    if args.greedy or not sampling_given:
        sampling = GREEDY
    if args.max_new_tokens < 0:
        raise ConfigError("--max-new-tokens must be >= 0")
    name = args.backend
    if name is None:
        name = bk.default_backend()
        log(f"backend {name} ({'board detected' if name == 'pynq' else 'no board detected: emulator'})")
    model = args.model or default_model(log)
    kw = {"timeout_s": args.timeout} if name in ("emu", "pynq") else {}
    if name == "pynq":
        kw["bitfile"] = args.overlay
    backend = bk.make_backend(name, model, board=args.board, **kw)
    try:
        tok = load_tokenizer(json_text=backend.tokenizer_json, force_bytes=args.byte_tokenizer)
        if tok.kind == "bytes":
            tok.vocab_size = backend.vocab_size
        log(f"tokenizer: {tok.describe()}")
        if args.prompt_ids is not None:
            ids = _parse_ids(args.prompt_ids)
        else:
            ids = tok.encode("Hello" if args.prompt is None else args.prompt)
        gen = Generation(backend, ids, args.max_new_tokens, sampling, tokenizer=tok,
                         eos_token_id=None if args.no_eos else -1)
        if args.json:
            for _ in gen:
                pass
            r = gen.result.as_dict()
            r["backend"] = name
            r["sampling"] = "greedy" if sampling.is_greedy else vars(sampling)
            print(json.dumps(r))
            return 0
        out = _sys.stdout
        if args.prompt is not None or args.prompt_ids is None:
            out.write("Hello" if args.prompt is None else args.prompt)
        for ev in gen:
            if ev.text:
                out.write(ev.text)
                out.flush()
        r = gen.result
        out.write("\n")
        pre = f"{r.prefill_tokens_per_s:.2f}" if r.prefill_tokens_per_s else "n/a"
        dec = f"{r.decode_tokens_per_s:.2f}" if r.decode_tokens_per_s else "n/a"
        out.write(f"[{name}] prefill: {len(r.prompt_ids)} tokens, {pre} tokens/s; decode: {len(r.tokens)} new "
                  f"tokens ({r.decode_steps} steps), {dec} tokens/s; stop: {r.stop_reason}\n")
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
