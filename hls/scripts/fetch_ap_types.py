#!/usr/bin/env python3
"""Fetch the Xilinx ap_int headers (Apache-2.0) for g++ C-simulation from the pinned hls4ml wheel.

    fetch_ap_types.py DEST     -> DEST/ap_int.h, DEST/ap_fixed.h, DEST/etc/ap_private.h, ...

The wheel is downloaded with pip (``pip download hls4ml==1.3.0 --no-deps``), its sha256 checked,
and only ``hls4ml/templates/vivado/ap_types/`` extracted. Nothing here is ever committed: DEST
lives under build/ or .cache/ (gitignored). Never put DEST on the Vitis HLS include path.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

WHEEL = "hls4ml-1.3.0-py3-none-any.whl"
SHA256 = "01bf1de2cd9bca56699b9fe3385cb1735026b022f9580fe1d73faf192dfb90f2"
PREFIX = "hls4ml/templates/vivado/ap_types/"
NEEDED = ("ap_int.h", "ap_common.h", "ap_decl.h", "ap_int_base.h", "ap_int_ref.h", "ap_int_special.h",
          "etc/ap_private.h")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: fetch_ap_types.py DEST")
    dest = os.path.abspath(argv[1])
    if all(os.path.exists(os.path.join(dest, n)) for n in NEEDED):
        return 0
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cache = os.environ.get("MMFREE_WHEEL_CACHE", os.path.join(root, ".cache", "hls4ml"))
    os.makedirs(cache, exist_ok=True)
    whl = os.path.join(cache, WHEEL)
    if not os.path.exists(whl) or sha256(whl) != SHA256:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", cache, "hls4ml==1.3.0"]
        print("fetching ap_types:", " ".join(cmd), flush=True)
        r = subprocess.run(cmd)
        if r.returncode != 0 or not os.path.exists(whl):
            sys.exit("could not download hls4ml==1.3.0 (needed only for its ap_int headers); "
                     "put %s into %s by hand" % (WHEEL, cache))
    got = sha256(whl)
    if got != SHA256:
        sys.exit("%s: sha256 %s, expected %s: refusing to use it" % (whl, got, SHA256))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="ap_types.", dir=os.path.dirname(dest) or ".")
    try:
        with zipfile.ZipFile(whl) as z:
            for name in z.namelist():
                if name.startswith(PREFIX) and not name.endswith("/"):
                    rel = name[len(PREFIX):]
                    out = os.path.join(tmp, rel)
                    os.makedirs(os.path.dirname(out), exist_ok=True)
                    with z.open(name) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst)
        missing = [n for n in NEEDED if not os.path.exists(os.path.join(tmp, n))]
        if missing:
            sys.exit("wheel lacks %s" % missing)
        if os.path.exists(dest):
            shutil.rmtree(dest)
        os.rename(tmp, dest)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
    print("ap_types ->", dest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
