#!/usr/bin/env python3
"""Check an installed mmfree the way a board uses it (run with the venv's python, from any folder).

    check_installed.py SOURCE_ROOT [--editable] [--board]

- the distribution is mmfree 0.1.0 (not setuptools' empty UNKNOWN-0.0.0), ``import mmfree`` works;
- with --editable, the module is the source tree's python/mmfree;
- the ``mmfree`` console script runs (``mmfree --version``);
- the ``pynq.overlays`` and ``pynq.notebooks`` entry points named mmfree load, through
  importlib.metadata and through pkg_resources (how PYNQ-Utils finds them), and point at the folders
  pynq searches (overlays/manifest.json, notebooks/*.ipynb);
- with --board, the board extra's packages: tokenizers imports, numpy is 1.x.
Exits 1 naming the first thing that is wrong.
"""
import glob
import importlib.metadata as md
import os
import subprocess
import sys


def fail(msg):
    print("check_installed: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def main(argv):
    root = os.path.abspath(argv[1])
    editable, board = "--editable" in argv, "--board" in argv
    try:
        dist = md.distribution("mmfree")
    except md.PackageNotFoundError:
        names = sorted(d.metadata["Name"] or "?" for d in md.distributions())
        fail("no distribution named mmfree (installed: %s)" % ", ".join(names))
    if dist.version != "0.1.0":
        fail("mmfree version %r, expected 0.1.0" % dist.version)
    import mmfree
    where = os.path.dirname(os.path.abspath(mmfree.__file__))
    if editable and where != os.path.join(root, "python", "mmfree"):
        fail("editable install imports mmfree from %s, not the source tree" % where)
    exe = os.path.join(os.path.dirname(sys.executable), "mmfree")
    if not os.path.exists(exe):
        fail("no console script %s" % exe)
    r = subprocess.run([exe, "--version"], capture_output=True, text=True)
    if r.returncode != 0 or r.stdout.strip() != "mmfree 0.1.0":
        fail("`mmfree --version` gave rc %d: %s%s" % (r.returncode, r.stdout, r.stderr))
    expect = {"pynq.overlays": ("mmfree.overlays", "manifest.json"),
              "pynq.notebooks": ("mmfree.notebooks", "*.ipynb")}
    eps = md.entry_points()
    for group, (module, pattern) in expect.items():
        found = [e for e in (eps.select(group=group) if hasattr(eps, "select") else eps.get(group, []))
                 if e.name == "mmfree"]
        if not found or found[0].value != module:
            fail("entry point %s: mmfree = %s missing (found %s)" % (group, module, found))
        mod = found[0].load()
        folder = os.path.dirname(os.path.abspath(mod.__file__))
        if not glob.glob(os.path.join(folder, pattern)):
            fail("entry point %s -> %s has no %s" % (group, folder, pattern))
        try:
            import pkg_resources  # PYNQ-Utils (ExtensionsManager) looks them up this way
        except ImportError:
            pkg_resources = None
        if pkg_resources is not None:
            names = [e.name for e in pkg_resources.iter_entry_points(group)]
            if "mmfree" not in names:
                fail("pkg_resources.iter_entry_points(%r) lacks mmfree (%s)" % (group, names))
    if board:
        import numpy
        import tokenizers  # noqa: F401  (readable text on the board)
        if int(numpy.__version__.split(".")[0]) >= 2:
            fail("numpy %s: the board extra pins numpy<2 (pynq 3.0.1 allocate breaks under numpy 2)" % numpy.__version__)
    print("check_installed: ok: mmfree %s from %s (%s); console script; pynq.overlays and pynq.notebooks entry "
          "points%s" % (dist.version, where, "editable" if editable else "installed",
                        "; tokenizers, numpy %s" % __import__("numpy").__version__ if board else ""))


if __name__ == "__main__":
    main(sys.argv)
