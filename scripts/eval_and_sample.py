#!/usr/bin/env python3
"""Validation perplexity (torch float reference) and sample generations of a checkpoint folder.

    PYTHONPATH=python python3 scripts/eval_and_sample.py CKPT_DIR --val data/corpus/val.txt \
        [--seq-len 512] [--max-windows N] [--device cpu|cuda] [--new-tokens 80] [--json out.json]

``--val`` is a corpus text file (tokenized with the checkpoint's tokenizer.json, cached) or a token
file already made by ``mmfree.train.tokenize_corpus`` (``.u16`` / ``.u32``). Greedy and sampled
(temperature 0.8, top-k 40, fixed seeds) continuations of a few fixed prompts.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

PROMPTS = [
    "The Python interpreter",
    "A function is",
    "In this chapter we",
    "The kernel",
    "Once upon a time",
    "The purpose of a database is",
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ckpt")
    ap.add_argument("--val", default=None)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-windows", type=int, default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--new-tokens", type=int, default=80)
    ap.add_argument("--prompts", nargs="*", default=PROMPTS)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)

    import torch
    from tokenizers import Tokenizer
    from mmfree.model import HGRNBit
    from mmfree.train import generate, tokenize_corpus, torch_perplexity

    dev = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    res = {"checkpoint": os.path.abspath(a.ckpt), "device": dev,
           "device_name": torch.cuda.get_device_name(0) if dev.startswith("cuda") else "cpu",
           "torch": torch.__version__}
    tok_json = os.path.join(a.ckpt, "tokenizer.json")
    if a.val:
        vt = a.val if a.val.endswith((".u16", ".u32")) else tokenize_corpus(a.val, tok_json)
        t0 = time.time()
        res["val"] = torch_perplexity(a.ckpt, vt, seq_len=a.seq_len, batch_size=a.batch_size, device=dev,
                                      max_windows=a.max_windows)
        res["val"]["seconds"] = time.time() - t0
        res["val"]["tokens_file"] = vt
        print(json.dumps(res["val"], indent=1), flush=True)
    model = HGRNBit.from_pretrained(a.ckpt, device=dev).eval()
    tok = Tokenizer.from_file(tok_json)
    res["samples"] = []
    for p in a.prompts:
        g = generate(model, tok, p, a.new_tokens, temperature=0.0)
        s = generate(model, tok, p, a.new_tokens, temperature=0.8, top_k=40, seed=1)
        res["samples"].append({"prompt": p, "greedy": g, "sampled_t0.8_k40_seed1": s})
        print(f"--- {p!r}\n[greedy] {p}{g}\n[sampled] {p}{s}", flush=True)
    if a.json:
        from mmfree.fileio import write_json
        write_json(a.json, res, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
