#!/usr/bin/env python3
"""Write overlay/<board>/build/board_params.tcl from python/mmfree/data/boards.json (the one place).

    gen_board_params.py BOARD OUT.tcl [--ip-repo DIR]

The Vivado scripts (overlay/common/*.tcl) read every board number from the Tcl array MMFREE set
here, never from numbers of their own. --ip-repo names the Vitis HLS IP export (a folder with
component.xml, or a .zip of one); without it the usual HLS build folders are searched and a zip
found there is unpacked into overlay/<board>/build/ip. Standard library only.
"""
import argparse
import glob
import json
import os
import re
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
BOARDS = os.path.join(ROOT, "python", "mmfree", "data", "boards.json")


def tcl_word(v):
    """A Python value as one Tcl word: dicts -> Tcl dicts, lists -> Tcl lists, scalars -> braced strings."""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, dict):
        return "{" + " ".join("%s %s" % (tcl_word(k), tcl_word(x)) for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "{" + " ".join(tcl_word(x) for x in v) + "}"
    s = str(v)
    if re.search(r"[{}\\\[\]$\"]", s):
        raise SystemExit("gen_board_params: value %r has Tcl special characters" % s)
    return "{" + s + "}"


def _is_kernel_ip(component_xml, top):
    try:
        with open(component_xml, "r", encoding="utf-8", errors="replace") as f:
            text = f.read(200000)
    except OSError:
        return False
    return re.search(r"<spirit:name>\s*%s\s*</spirit:name>" % re.escape(top), text) is not None


def find_ip_repo(board, top, build_dir, explicit=None):
    """Folder holding the exported IP's component.xml (unpacks a zip export into build_dir/ip)."""
    cands = []
    if explicit:
        cands.append(explicit)
    else:
        for pat in ("build/hls/%s" % board, "hls/build/%s" % board, "build/hls_%s" % board, "build/%s/hls" % board):
            cands.append(os.path.join(ROOT, pat))
    for c in cands:
        if os.path.isfile(c) and c.endswith(".zip"):
            return _unzip(c, build_dir)
        if not os.path.isdir(c):
            continue
        for xml in sorted(glob.glob(os.path.join(c, "**", "component.xml"), recursive=True)):
            if _is_kernel_ip(xml, top):
                return os.path.dirname(os.path.abspath(xml))
        for z in sorted(glob.glob(os.path.join(c, "**", "*.zip"), recursive=True)):
            if top in os.path.basename(z) or os.path.basename(z) == "export.zip":
                return _unzip(z, build_dir)
    return None


def _unzip(z, build_dir):
    dest = os.path.join(build_dir, "ip")
    os.makedirs(dest, exist_ok=True)
    with zipfile.ZipFile(z) as f:
        f.extractall(dest)
    return os.path.abspath(dest)


def params(board, ip_repo):
    with open(BOARDS, "r", encoding="utf-8") as f:
        raw = json.load(f)
    if board.startswith("_") or board not in raw:
        names = ", ".join(k for k in raw if not k.startswith("_"))
        raise SystemExit("gen_board_params: unknown board %r; boards.json knows: %s" % (board, names))
    b, k = raw[board], raw["_kernel"]
    # prose the build does not read (sources, what the power sensor measures) stays out of the Tcl
    vals = {key: v for key, v in b.items() if key not in ("sources", "power_sensor")}
    vals["board"] = board
    vals["kernel_top"] = k["top"]
    vals["kernel_vlnv"] = k["vlnv"]
    vals["kernel_ctrl_intf"] = k["ctrl_intf"]
    vals["weight_bundles"] = ["%s%d" % (k["weight_bundle_prefix"], i) for i in range(b["weight_ports"])]
    vals["io_bundles"] = list(k["io_bundles"])
    vals["ip_repo"] = ip_repo or ""
    lines = ["# Generated from python/mmfree/data/boards.json by overlay/scripts/gen_board_params.py: do not edit.",
             "# Board %s. Read by overlay/common/*.tcl through the array MMFREE." % board]
    for key in sorted(vals):
        if key.startswith("_"):
            continue
        lines.append("set MMFREE(%s) %s" % (key, tcl_word(vals[key])))
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("board")
    ap.add_argument("out")
    ap.add_argument("--ip-repo", default=None, help="Vitis HLS IP export: folder with component.xml or a .zip")
    ap.add_argument("--require-ip", action="store_true", help="fail when the IP export is not found")
    a = ap.parse_args(argv)
    with open(BOARDS, "r", encoding="utf-8") as f:
        top = json.load(f)["_kernel"]["top"]
    build_dir = os.path.dirname(os.path.abspath(a.out))
    os.makedirs(build_dir, exist_ok=True)
    repo = find_ip_repo(a.board, top, build_dir, a.ip_repo)
    if repo is None and a.require_ip:
        sys.stderr.write(
            "error: no Vitis HLS export of %s for %s found%s.\n"
            "       Run `make hls BOARD=%s` first (Vitis HLS), or pass HLS_IP_REPO=<folder with component.xml or .zip>.\n"
            % (top, a.board, " in %s" % a.ip_repo if a.ip_repo else " under build/hls/%s or hls/build/%s" % (a.board, a.board),
               a.board))
        return 2
    text = params(a.board, repo)
    old = open(a.out).read() if os.path.exists(a.out) else None
    if old != text:
        with open(a.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
