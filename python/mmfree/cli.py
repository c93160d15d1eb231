"""The ``mmfree`` command line. Each subcommand is one ``cmd_*`` function registered in ``COMMANDS``.

Bad input ends in one line on stderr naming the problem and exit status 2, never a traceback.
"""

import argparse
import json
import sys

from .errors import MMFreeError


def cmd_convert(args):
    from .convert import convert
    convert(args.hf_dir, args.output, packing=args.packing, progress=not args.quiet)


def cmd_info(args):
    from . import packed as pk
    m = pk.load(args.model)
    c = m.config
    info = {
        "path": args.model, "format": f"{pk.FORMAT_NAME} v{pk.FORMAT_VERSION}", "packing": m.packing,
        "hidden_size": c.hidden_size, "num_hidden_layers": c.num_hidden_layers,
        "intermediate_size": c.intermediate_size, "vocab_size": c.vocab_size,
        "ternary_weights": m.n_weights(), "bits_per_weight": round(m.bits_per_weight(), 4),
        "code_bytes": m.nbytes(".codes"), "embedding_bytes": int(m.tensor("embeddings").nbytes),
        "file_bytes": m.file_size, "tokenizer": "tokenizer.json" if m.tokenizer_json else "none (byte fallback)",
        "source": m.source,
    }
    if args.json:
        print(json.dumps(info))
        return
    width = max(len(k) for k in info)
    for k, v in info.items():
        print(f"{k:<{width}}  {v}")


def _add_convert(sub):
    p = sub.add_parser("convert", help="convert a Hugging Face HGRNBit checkpoint folder to a packed file")
    p.add_argument("hf_dir", help="checkpoint folder (config.json + model.safetensors or a sharded index)")
    p.add_argument("-o", "--output", required=True, help="output .safetensors path")
    p.add_argument("--packing", choices=("2bit", "base3"), default="base3",
                   help="ternary code packing: 2 bits per weight or 5 weights per byte (default base3)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_convert)


def _add_info(sub):
    p = sub.add_parser("info", help="print a packed model's config, packing, bits per weight and size")
    p.add_argument("model", help="packed model file")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=cmd_info)


def cmd_generate(args):
    from .generate import run_cli
    return run_cli(args)


def _add_generate(sub):
    from .generate import add_arguments
    p = sub.add_parser("generate", help="generate text from a packed model on a backend (pynq, emu, golden, torch)")
    add_arguments(p)
    p.set_defaults(func=cmd_generate)


def _add_bench(sub):
    from . import bench
    p = sub.add_parser("bench", help="measure a backend's tokens/s, or project a board's (modeled)")
    bench.add_arguments(p)
    p.set_defaults(func=bench.run_cli)


def _add_perplexity(sub):
    from . import evaluate
    p = sub.add_parser("perplexity", help="validation perplexity of a model on a text file (golden or torch)")
    evaluate.add_arguments(p)
    p.set_defaults(func=evaluate.run_cli)


def cmd_train(args):
    from . import train
    return train.main(args.train_args)


def _add_train(sub):
    p = sub.add_parser("train", add_help=False,
                       help="quantization-aware training of an HGRNBit model (torch; `mmfree train --help`)")
    p.add_argument("train_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_train)


COMMANDS = [_add_convert, _add_info, _add_generate, _add_bench, _add_perplexity, _add_train]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = argparse.ArgumentParser(prog="mmfree", description="Ternary MatMul-free LMs on PYNQ FPGAs")
    parser.add_argument("--version", action="version", version=f"mmfree {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:  # mmfree.train has its own parser: hand it every argument, --help included
        from . import train
        return int(train.main(argv[1:]) or 0)
    args = build_parser().parse_args(argv)
    try:
        rc = args.func(args)
    except MMFreeError as e:
        print(f"mmfree {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        print(f"mmfree {args.command}: error: {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
