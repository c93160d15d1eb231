"""Argument parsing shared by every ``mmfree`` subcommand: one parser class, one help formatter, and
argparse ``type=`` validators with ranges.

Every flag that means the same thing has the same name in every subcommand (``--model``,
``--backend``, ``--board``, ``--max-new-tokens``, ``--seed``, ``--json``, ``--quiet``, ...), and every
value is checked when the command line is parsed: a bad value ends in one line on stderr
(``mmfree SUBCOMMAND: error: ...``) and exit status 2, before anything is loaded or written.
"""

import argparse
import math
import sys

# Upper bounds: large enough for any real use, small enough that a typo cannot run for days or
# allocate the machine away.
MAX_NEW_TOKENS = 65536          # tokens per `generate` / `bench` run
MAX_PROMPT_TOKENS = 65536       # bench's random prompt
MAX_SEQ_LEN = 1 << 20           # perplexity / training window
MAX_SEED = 2**63 - 1
MAX_TIMEOUT_S = 24 * 3600.0


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written; '(default: X)' after every option that has a default
    and whose help does not state one already."""

    def _get_help_string(self, action):
        h = action.help or ""
        if h == argparse.SUPPRESS:
            return h
        d = action.default
        if (d is None or d is False or d == argparse.SUPPRESS or "default" in h or "%(default)" in h
                or not action.option_strings and action.nargs not in ("?", "*")):
            return h
        if isinstance(action, (argparse._StoreTrueAction, argparse._HelpAction, argparse._VersionAction)):
            return h
        return h + " (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error: ``PROG: error: MESSAGE (see PROG --help)``, exit status 2."""

    def __init__(self, *a, **kw):
        kw.setdefault("formatter_class", HelpFormatter)
        super().__init__(*a, **kw)

    def error(self, message):
        message = " ".join(str(message).split())  # argparse messages may wrap: keep one line
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _num(kind, text):
    try:
        return kind(text)
    except (TypeError, ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}")


def int_range(lo=None, hi=None):
    """An integer in [lo, hi] (either bound may be None)."""

    def parse(text):
        v = _num(int, text)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be an integer in [{lo if lo is not None else '-inf'}, "
                                             f"{hi if hi is not None else 'inf'}], got {text}")
        return v

    parse.__name__ = "integer"
    return parse


def float_range(lo=None, hi=None, lo_open=False, hi_open=False):
    """A finite number in the range (bounds inclusive unless *_open)."""

    def parse(text):
        v = _num(float, text)
        bad = not math.isfinite(v)
        if lo is not None:
            bad = bad or (v <= lo if lo_open else v < lo)
        if hi is not None:
            bad = bad or (v >= hi if hi_open else v > hi)
        if bad:
            lb = ("(" if lo_open else "[") + (f"{lo:g}" if lo is not None else "-inf")
            ub = (f"{hi:g}" if hi is not None else "inf") + (")" if hi_open else "]")
            raise argparse.ArgumentTypeError(f"must be a finite number in {lb}, {ub}, got {text}")
        return v

    parse.__name__ = "number"
    return parse


def text(value):
    """A command-line string that is valid Unicode (argv bytes that are not UTF-8 are refused)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError("is not valid UTF-8 text") from None
    return value


text.__name__ = "text"


def token_ids(value):
    """Comma-separated token ids, e.g. '1,415,2936'."""
    parts = [t for t in value.replace(" ", "").split(",") if t != ""]
    if not parts:
        raise argparse.ArgumentTypeError("needs at least one token id, e.g. 1,415,2936")
    out = []
    for t in parts:
        try:
            i = int(t)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be comma-separated integers, got {value!r}") from None
        if not 0 <= i < 2**31:
            raise argparse.ArgumentTypeError(f"token id {t} is out of range")
        out.append(i)
    return out


token_ids.__name__ = "token ids"


def board_name(value):
    """A board of boards.json (case and '_' vs '-' do not matter; 'kria' = kv260)."""
    from . import boards
    key = boards.normalize(text(value))
    names = boards.names()
    if key not in names:
        raise argparse.ArgumentTypeError(f"unknown board {value!r}; one of {', '.join(names)}")
    return key


board_name.__name__ = "board"


def safe(value) -> str:
    """A string fit for a terminal: control characters (C0, DEL, C1) and other non-printable
    characters shown as escapes (\\x1b, \\u202e), everything else as is."""
    s = str(value)
    out = []
    for ch in s:
        if ch.isprintable() or ch == " ":
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def safe_stream(value) -> str:
    """Like ``safe`` but keeps newlines and tabs (generated text)."""
    return "".join(ch if ch in "\n\t" else safe(ch) for ch in str(value))


def stderr(prog, msg):
    print(f"{prog}: {msg}", file=sys.stderr, flush=True)
