"""The ``mmfree`` command line. Each subcommand is one ``_add_*`` function registered in ``COMMANDS``.

Flags mean the same thing in every subcommand (``--model``, ``--backend``, ``--board``,
``--max-new-tokens``, ``--seed``, ``--json``, ``-q/--quiet``); every value is range-checked when the
command line is parsed (``mmfree.cliargs``). Bad input ends in one line on stderr naming the
problem and exit status 2, never a traceback.
"""

import argparse
import json
import lzma
import sys

from . import cliargs as ca
from .errors import MMFreeError

MODEL_HELP = "packed model file (.safetensors from `mmfree convert`); default: the bundled 25M-parameter model"


def add_model(p, positional_alias=True, help=MODEL_HELP):
    """``-m/--model PATH``; ``positional_alias`` also accepts the model as the first positional
    argument (the older spelling of info and perplexity)."""
    p.add_argument("-m", "--model", metavar="PATH", help=help)
    p.add_argument("--no-verify", action="store_true",
                   help="skip the model file's integrity hash when loading it (faster on a large model; "
                        "every other check still runs)")
    if positional_alias:
        p.add_argument("model_pos", nargs="?", metavar="MODEL", help=argparse.SUPPRESS)


def resolve_model(args, log=None):
    """The model path: --model, else the positional alias, else the bundled model."""
    pos = getattr(args, "model_pos", None)
    if args.model is not None and pos is not None:
        raise MMFreeError(f"the model is given twice ({args.model!r} and {pos!r}); give --model only")
    model = args.model if args.model is not None else pos
    if model == "":
        raise MMFreeError("the model path is empty")
    if model is not None:
        return model
    from .generate import default_model
    return default_model(log)


# ---------------------------------------------------------------------------------------- convert
def cmd_convert(args):
    from .convert import convert
    convert(args.checkpoint, args.output, packing=args.packing, progress=not args.quiet)


def _add_convert(sub):
    p = sub.add_parser(
        "convert", help="convert a Hugging Face HGRNBit checkpoint folder to a packed model file",
        description="Convert a released-format HGRNBit checkpoint folder (config.json, *.safetensors with bf16\n"
                    "latent weights, tokenizer.json) into one packed .safetensors file: ternary codes, scales,\n"
                    "embeddings, config and tokenizer. numpy only (no torch).",
        epilog="example (hf: the Hugging Face CLI of huggingface_hub; older versions: huggingface-cli download):\n"
               "  hf download ridger/MMfreeLM-370M --local-dir MMfreeLM-370M\n"
               "  mmfree convert MMfreeLM-370M -o mmfree-370m.safetensors")
    p.add_argument("checkpoint", metavar="CHECKPOINT_DIR",
                   help="checkpoint folder (config.json + model.safetensors, or a sharded index)")
    p.add_argument("-o", "--output", required=True, metavar="PATH", help="output packed .safetensors path")
    p.add_argument("--packing", choices=("2bit", "base3"), default="base3",
                   help="ternary code packing: 2bit (4 weights per byte) or base3 (5 weights per byte)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_convert)


# ---------------------------------------------------------------------------------------- info
def cmd_info(args):
    from . import packed as pk
    path = resolve_model(args)
    m = pk.load(path)
    c = m.config
    info = {
        "path": path, "format": f"{pk.FORMAT_NAME} v{pk.FORMAT_VERSION}", "packing": m.packing,
        "hidden_size": c.hidden_size, "num_hidden_layers": c.num_hidden_layers,
        "intermediate_size": c.intermediate_size, "vocab_size": c.vocab_size,
        "ternary_weights": m.n_weights(), "bits_per_weight": round(m.bits_per_weight(), 4),
        "code_bytes": m.nbytes(".codes"), "embedding_bytes": int(m.tensor("embeddings").nbytes),
        "file_bytes": m.file_size, "tokenizer": "tokenizer.json" if m.tokenizer_json else "none (byte fallback)",
        "source": m.source, "integrity": m.integrity,
    }
    if args.json:
        print(json.dumps(info))   # JSON escapes every control character
        return
    units = {"code_bytes": "bytes", "embedding_bytes": "bytes", "file_bytes": "bytes", "bits_per_weight": "bits"}
    width = max(len(k) for k in info)
    for k, v in info.items():
        # the file's own strings (source, path) may hold terminal escapes: print them escaped
        print(f"{k:<{width}}  {ca.safe(v)}" + (f" {units[k]}" if k in units else ""))


def _add_info(sub):
    p = sub.add_parser("info", help="print a packed model's shape, packing, bits per weight and sizes",
                       description="Print a packed model's configuration, packing, bits per ternary weight and\n"
                                   "sizes (bytes). Strings from the file are printed with control characters escaped.",
                       epilog="example:\n  mmfree info --model mmfree-370m.safetensors")
    add_model(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_info)


# ---------------------------------------------------------------------------------------- the rest
def _add_generate(sub):
    from . import generate
    p = sub.add_parser("generate", help="generate text from a packed model (backends pynq, emu, golden, torch)",
                       description=generate.CLI_DESCRIPTION, epilog=generate.CLI_EPILOG)
    generate.add_arguments(p)
    p.set_defaults(func=generate.run_cli)


def _add_bench(sub):
    from . import bench
    p = sub.add_parser("bench", help="measure a backend's tokens/s here, or model a board's (--project)",
                       description=bench.CLI_DESCRIPTION, epilog=bench.CLI_EPILOG)
    bench.add_arguments(p)
    p.set_defaults(func=bench.run_cli)


def _add_perplexity(sub):
    from . import evaluate
    p = sub.add_parser("perplexity", help="perplexity of a model on a text file (golden or torch)",
                       description=evaluate.CLI_DESCRIPTION, epilog=evaluate.CLI_EPILOG)
    evaluate.add_arguments(p)
    p.set_defaults(func=evaluate.run_cli)


def _add_train(sub):
    from . import train
    p = sub.add_parser("train", help="quantization-aware training of a small HGRNBit model (needs torch)",
                       description=train.CLI_DESCRIPTION)
    train.add_arguments(p)
    p.set_defaults(func=train.run_cli)


COMMANDS = [_add_convert, _add_info, _add_generate, _add_bench, _add_perplexity, _add_train]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = ca.Parser(prog="mmfree", description="Ternary MatMul-free language models on PYNQ FPGA boards, "
                                                  "or in emulation on this host.",
                       epilog="`mmfree COMMAND --help` describes each command. Docs: README.md, docs/.")
    parser.add_argument("--version", action="version", version=f"mmfree {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv=None) -> int:
    from . import packed as pk
    verify = pk.VERIFY_DEFAULT
    try:
        return _main(argv)
    finally:
        pk.VERIFY_DEFAULT = verify  # --no-verify holds for one command


def _main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:
        parser.print_help()
        return 0
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help, --version (0) or a bad argument (2), already printed
        return e.code if isinstance(e.code, int) else 2
    if args.command is None:  # only global options
        parser.print_help()
        return 0
    prog = f"mmfree {args.command}"
    from . import packed as pk
    verify_before = pk.VERIFY_DEFAULT
    pk.VERIFY_DEFAULT = verify_before and not getattr(args, "no_verify", False)
    try:
        rc = args.func(args)
    except MMFreeError as e:
        print(f"{prog}: error: {ca.safe(e)}", file=sys.stderr)
        return 2
    except ImportError as e:
        print(f"{prog}: error: needs the Python package {e.name or e}, which is not installed "
              f"(`make venv` installs the full host set)", file=sys.stderr)
        return 2
    except (EOFError, lzma.LZMAError) as e:  # a truncated or damaged .xz / .gz input
        print(f"{prog}: error: a compressed input file is damaged ({ca.safe(e)})", file=sys.stderr)
        return 2
    except UnicodeError as e:
        print(f"{prog}: error: not valid UTF-8 text ({ca.safe(e)})", file=sys.stderr)
        return 2
    except OSError as e:
        where = f"{ca.safe(e.filename)}: " if e.filename else ""
        print(f"{prog}: error: {where}{ca.safe(e.strerror or e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
