"""Write a random HGRNBit checkpoint in the released format (for measurements without real weights).

    python scripts/make_random_checkpoint.py OUT_DIR --size 370M [--dtype bfloat16] [--shard-mb 0]
"""
import argparse
import sys

import torch

from mmfree.config import HGRNBitConfig
from mmfree.model import HGRNBit

SIZES = {"370M": (1024, 24), "1.3B": (2048, 24), "2.7B": (2560, 32)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--size", choices=SIZES, default="370M")
    ap.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), default="bfloat16")
    ap.add_argument("--shard-mb", type=int, default=0, help="shard size in MB (0: one file)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    d, layers = SIZES[a.size]
    torch.manual_seed(a.seed)
    cfg = HGRNBitConfig(hidden_size=d, num_hidden_layers=layers, vocab_size=32000)
    m = HGRNBit(cfg).to(getattr(torch, a.dtype))
    with torch.no_grad():
        m.model.lower_bounds.normal_()
    m.save_pretrained(a.out, dtype=getattr(torch, a.dtype), max_shard_bytes=a.shard_mb * 2**20 or None)
    print(f"wrote {a.out}: {a.size} ({sum(p.numel() for p in m.parameters()) / 1e6:.1f} M params, {a.dtype})")


if __name__ == "__main__":
    sys.exit(main())
