"""Tokenizers for generation: the packed file's tokenizer.json, or a byte-level fallback.

    tok = load_tokenizer(packed_model)      # tokenizer.json via `tokenizers`, else bytes
    tok.kind                                # "tokenizers" or "bytes"
    ids = tok.encode("hello"); text = tok.decode(ids)
    dec = tok.stream_decoder(); piece = dec.add(token_id)   # incremental text, whole characters only

The byte-level fallback maps ids 0..255 to bytes (ids above 255 decode to nothing): for models
without a tokenizer, and for boards where the ``tokenizers`` library is not installed.
"""

import codecs
from typing import List, Optional, Sequence

from .errors import ConfigError


class ByteTokenizer:
    """ids 0..255 are the bytes of the UTF-8 text; larger ids decode to nothing."""

    kind = "bytes"

    def __init__(self, vocab_size: Optional[int] = None, eos_token_id: Optional[int] = None, reason: str = ""):
        self.vocab_size = vocab_size
        self.eos_token_id = eos_token_id
        self.reason = reason

    def describe(self) -> str:
        return "byte-level fallback (ids 0..255 = bytes)" + (f": {self.reason}" if self.reason else "")

    def encode(self, text: str) -> List[int]:
        ids = list(text.encode("utf-8"))
        if self.vocab_size is not None and ids and max(ids) >= self.vocab_size:
            raise ConfigError(f"byte-level tokenizer: the prompt has byte {max(ids)} but the model's vocabulary "
                              f"has {self.vocab_size} ids; use --prompt-ids or a model with a tokenizer")
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")

    def stream_decoder(self) -> "_ByteStream":
        return _ByteStream()


class _ByteStream:
    def __init__(self):
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def add(self, token: int) -> str:
        t = int(token)
        return self._dec.decode(bytes([t])) if 0 <= t < 256 else ""

    def flush(self) -> str:
        return self._dec.decode(b"", final=True)


class HFTokenizer:
    """A `tokenizers.Tokenizer` built from tokenizer.json text (``encode`` adds its special tokens)."""

    kind = "tokenizers"

    def __init__(self, json_text: str, eos_token_id: Optional[int] = None):
        from tokenizers import Tokenizer

        try:
            self.tok = Tokenizer.from_str(json_text)
        except Exception as e:  # the library raises plain Exception subclasses on bad JSON
            raise ConfigError(f"tokenizer.json in the model file does not load: {e}") from None
        self.vocab_size = self.tok.get_vocab_size()
        self.eos_token_id = eos_token_id

    def describe(self) -> str:
        return f"tokenizer.json from the model file ({self.vocab_size} ids, `tokenizers` library)"

    def encode(self, text: str) -> List[int]:
        return list(self.tok.encode(text).ids)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def stream_decoder(self) -> "_TextStream":
        return _TextStream(self)


class _TextStream:
    """Decode the whole sequence each time and emit what is new; hold back a trailing U+FFFD
    (an incomplete UTF-8 sequence of byte-level BPE tokens)."""

    def __init__(self, tok: HFTokenizer):
        self.tok, self.ids, self.emitted = tok, [], ""

    def add(self, token: int) -> str:
        self.ids.append(int(token))
        text = self.tok.decode(self.ids)
        if text.endswith("\ufffd"):
            return ""
        if not text.startswith(self.emitted):  # the decoder rewrote earlier text (rare): emit the tail only
            piece = text[len(self.emitted):] if len(text) > len(self.emitted) else ""
        else:
            piece = text[len(self.emitted):]
        self.emitted = text
        return piece

    def flush(self) -> str:
        text = self.tok.decode(self.ids)
        piece = text[len(self.emitted):] if text.startswith(self.emitted) else ""
        self.emitted = text
        return piece


def load_tokenizer(model=None, json_text: Optional[str] = None, force_bytes: bool = False):
    """The tokenizer for a packed model (or tokenizer.json text): `tokenizers` when the model has a
    tokenizer and the library is installed, else the byte-level fallback (``.reason`` says why)."""
    vocab = eos = None
    if model is not None:
        cfg = model.config
        vocab, eos = cfg.vocab_size, cfg.eos_token_id
        if json_text is None:
            json_text = model.tokenizer_json
    if force_bytes:
        return ByteTokenizer(vocab, eos, "requested")
    if not json_text:
        return ByteTokenizer(vocab, eos, "the model file has no tokenizer")
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        return ByteTokenizer(vocab, eos, "the `tokenizers` library is not installed")
    return HFTokenizer(json_text, eos)
