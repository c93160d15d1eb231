#!/usr/bin/env python3
"""Golden vector files for the Vitis HLS csim/cosim testbench (a tiny random model, one shape: s70,
d 70, I 150, V 37, 2 layers).

    gen_vectors.py OUTDIR [--packing base3]    -> prints the file list (space separated)

The files: one decode token as single-op calls (EMBED, LAYER x 2, HEAD), then the whole-token ops on the
weights arena and the [L, pad4(d)] state: a BODY call (a prompt token from the zero state) and a TOKEN
call (the next token: every layer's intermediates, state rows and logits bit for bit).
Needs the host extras (torch) to make the random checkpoint, like the pytest fixtures.
"""
import argparse
import os
import pathlib
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "tests"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--packing", default="base3", choices=["2bit", "base3"])
    a = ap.parse_args()
    from conftest import make_packed
    import test_csim_kernel as t
    out = pathlib.Path(a.outdir)
    out.mkdir(parents=True, exist_ok=True)
    _, path = make_packed(out, shape=t.SHAPES["s70"], packing=a.packing)
    files = t.vector_files(path, str(out / a.packing), tokens=(3,))
    print(" ".join(f for f, _ in files))


if __name__ == "__main__":
    main()
