"""Board parameters (python/mmfree/data/boards.json), board detection, overlay lookup, resource model.

boards.json is the one place for a board's numbers: the HLS build (hls/scripts/gen_board_header.py),
the overlay build (overlay/scripts/gen_board_params.py writes a Tcl file from it), the driver and the
performance model all read it. This module loads and validates it, finds which board we run on,
finds the overlay (``.bit`` + ``.hwh``) for a board, and estimates the PL resources of the design.

    >>> from mmfree import boards
    >>> b = boards.get("kv260"); b["clock_mhz"], b["weight_ports"]
    (250, 6)
    >>> boards.detect_board()          # None off-board
    >>> boards.overlay_path("kv260")   # raises OverlayMissing with instructions until built

Schema: docs/boards.md. Needs only the standard library (it runs on the board image too).
"""
import json
import os
import re

from .errors import ConfigError, DeviceError

__all__ = [
    "BOARDS_JSON", "OverlayMissing", "load", "names", "get", "kernel", "detect_board", "overlay_dir",
    "overlay_files", "overlay_path", "load_overlay", "manifest", "resource_estimate", "resource_budget",
    "estimate_fits", "COST_MODEL",
]

BOARDS_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "boards.json")

_HEX = re.compile(r"^0x[0-9a-fA-F]+$")


class OverlayMissing(DeviceError):
    """The overlay (.bit + .hwh) for a board is not where pynq looks for it; the message says what to do."""


# ----------------------------------------------------------------------------------------------
# loading and validation

_REQUIRED = {
    # key: type (existing keys, read by hls/ and the model)
    "part": str, "family": str, "pynq_version": str, "clock_mhz": (int, float), "weight_ports": int,
    "port_bits": int, "ddr_peak_gbps": (int, float), "ddr_bytes": int, "cma_bytes": int,
    "max_d": int, "max_inter": int, "max_vocab": int, "max_layers": int,
    # overlay build, driver, packaging
    "overlay_name": str, "board_part": str, "board_connections": str, "board_files": str, "ps": str,
    "vivado_version": str, "pynq_image": str, "python_version": str, "numpy_pin": str,
    "pl_clock": dict, "ps_master": dict, "weight_hp_ports": list, "io_hp_port": dict,
    "ddr_segments": list, "ctrl_base": str, "intc_base": str, "addr_window": str,
    "interrupt": dict, "detect": dict, "resources": dict,
}
_FAMILY_PS = {"zynq_ultrascale_plus": "zynq_ultra_ps_e", "zynq7000": "processing_system7"}
_FAMILY_PORT_BITS = {"zynq_ultrascale_plus": 128, "zynq7000": 64}
_FAMILY_CLOCK_SOURCE = {"zynq_ultrascale_plus": "IOPLL", "zynq7000": "IO PLL"}
_PART_PREFIX = {"zynq_ultrascale_plus": ("xczu", "xck26"), "zynq7000": ("xc7z",)}
_MAX_WEIGHT_PORTS = 6  # hls/include/mmfree_regs.h MMFREE_MAX_WEIGHT_PORT_REGS (tests compare)
# PS slave ports a kernel m_axi may use, per family (PS pin names)
_PS_SLAVE_PORTS = {
    "zynq_ultrascale_plus": ("S_AXI_HP0_FPD", "S_AXI_HP1_FPD", "S_AXI_HP2_FPD", "S_AXI_HP3_FPD",
                             "S_AXI_HPC0_FPD", "S_AXI_HPC1_FPD", "S_AXI_LPD"),
    "zynq7000": ("S_AXI_HP0", "S_AXI_HP1", "S_AXI_HP2", "S_AXI_HP3", "S_AXI_ACP"),
}
_HP_KEYS = ("port", "intf", "seg_prefix", "enable", "width_param", "aclk")


def hexint(s):
    """'0xA0000000' -> 2684354560 (addresses in boards.json are hex strings)."""
    if not isinstance(s, str) or not _HEX.match(s):
        raise ConfigError("expected a hex string like '0x80000000', got %r" % (s,))
    return int(s, 16)


def _validate(name, b):
    where = "boards.json board %r" % name
    for key, typ in _REQUIRED.items():
        if key not in b:
            raise ConfigError("%s: missing key %r" % (where, key))
        if not isinstance(b[key], typ) or isinstance(b[key], bool):
            raise ConfigError("%s: key %r has type %s" % (where, key, type(b[key]).__name__))
    fam = b["family"]
    if fam not in _FAMILY_PS:
        raise ConfigError("%s: unknown family %r (known: %s)" % (where, fam, ", ".join(_FAMILY_PS)))
    if b["ps"] != _FAMILY_PS[fam]:
        raise ConfigError("%s: family %s needs ps %s, not %s" % (where, fam, _FAMILY_PS[fam], b["ps"]))
    if not b["part"].startswith(_PART_PREFIX[fam]):
        raise ConfigError("%s: part %s is not a %s part" % (where, b["part"], fam))
    if b["port_bits"] != _FAMILY_PORT_BITS[fam]:
        raise ConfigError("%s: %s HP ports are %d bits, not %d" % (where, fam, _FAMILY_PORT_BITS[fam], b["port_bits"]))
    if not 1 <= b["weight_ports"] <= _MAX_WEIGHT_PORTS:
        raise ConfigError("%s: weight_ports must be 1..%d" % (where, _MAX_WEIGHT_PORTS))
    if len(b["weight_hp_ports"]) != b["weight_ports"]:
        raise ConfigError("%s: %d weight_hp_ports for %d weight ports" % (where, len(b["weight_hp_ports"]), b["weight_ports"]))
    hp = list(b["weight_hp_ports"]) + [b["io_hp_port"]]
    for p in hp:
        missing = [k for k in _HP_KEYS if k not in p]
        if missing:
            raise ConfigError("%s: HP port %r lacks %s" % (where, p.get("port"), ", ".join(missing)))
    ports = [p["port"] for p in hp]
    for port in ports:
        if port not in _PS_SLAVE_PORTS[fam]:
            raise ConfigError("%s: %s is not a %s PS slave port (%s)" % (where, port, fam, ", ".join(_PS_SLAVE_PORTS[fam])))
    if len(set(ports)) != len(ports):
        raise ConfigError("%s: an HP port is used twice: %s" % (where, ports))
    if b["pl_clock"].get("source") != _FAMILY_CLOCK_SOURCE[fam]:
        raise ConfigError("%s: the PL clock must come from %s (PYNQ programs PL clocks through it), not %r"
                          % (where, _FAMILY_CLOCK_SOURCE[fam], b["pl_clock"].get("source")))
    if not 10 <= b["clock_mhz"] <= (400 if fam == "zynq_ultrascale_plus" else 250):
        raise ConfigError("%s: clock_mhz %s out of range" % (where, b["clock_mhz"]))
    for key in ("ctrl_base", "intc_base", "addr_window"):
        hexint(b[key])
    total = 0
    for seg in b["ddr_segments"]:
        if set(seg) != {"name", "base", "size"}:
            raise ConfigError("%s: ddr segment %r needs name, base, size" % (where, seg))
        total += hexint(seg["size"])
        hexint(seg["base"])
    if total != b["ddr_bytes"]:
        raise ConfigError("%s: ddr_segments cover %d bytes, ddr_bytes is %d" % (where, total, b["ddr_bytes"]))
    if b["cma_bytes"] > b["ddr_bytes"]:
        raise ConfigError("%s: cma_bytes larger than the DDR" % where)
    for key in ("lut", "ff", "bram36", "uram", "dsp"):
        if not isinstance(b["resources"].get(key), int):
            raise ConfigError("%s: resources.%s must be an integer" % (where, key))
    if not re.match(r"^[A-Za-z0-9_]+$", b["overlay_name"]):
        raise ConfigError("%s: overlay_name %r must be a Vivado/Python identifier" % (where, b["overlay_name"]))
    if not re.match(r"^20\d\d\.\d$", b["vivado_version"]):
        raise ConfigError("%s: vivado_version %r is not like 2022.1" % (where, b["vivado_version"]))


_cache = {}


def load(path=None):
    """All boards as {name: dict} (validated); keys of boards.json starting with '_' are not boards."""
    path = path or BOARDS_JSON
    if path in _cache:
        return _cache[path]
    with open(path, "r", encoding="utf-8") as f:
        raw = json.load(f)
    boards = {}
    for name, b in raw.items():
        if name.startswith("_"):
            continue
        _validate(name, b)
        boards[name] = b
    if "_kernel" not in raw:
        raise ConfigError("boards.json lacks the _kernel block (IP top, VLNV, interface names)")
    boards_meta = dict(raw["_kernel"])
    _cache[path] = (boards, boards_meta)
    return _cache[path]


def names():
    """Board names, e.g. ['kv260', 'zcu104', 'pynq-z2']."""
    return list(load()[0])


def get(board):
    """One board's parameters (a dict; do not modify)."""
    boards = load()[0]
    key = normalize(board)
    if key not in boards:
        raise ConfigError("unknown board %r; known boards: %s" % (board, ", ".join(boards)))
    return boards[key]


def kernel():
    """The IP's fixed names: top, vlnv, ctrl_intf, io_bundles, weight_bundle_prefix."""
    return load()[1]


def m_axi_bundles(board):
    """The kernel's m_axi bundles on a board, weight ports first: ['gmem_w0', ..., 'gmem_io', 'gmem_emb']."""
    b, k = get(board), kernel()
    return ["%s%d" % (k["weight_bundle_prefix"], i) for i in range(b["weight_ports"])] + list(k["io_bundles"])


# KR260 carries the same K26 SOM and runs KV260 bitstreams (the overlay uses no carrier I/O), as
# PYNQ-HelloWorld's resizer.bit.link does
_ALIASES = {"pynqz2": "pynq-z2", "kria": "kv260", "k26": "kv260", "kr260": "kv260"}


def normalize(name):
    """A board name as boards.json spells it ('PYNQ_Z2' -> 'pynq-z2', 'kria' -> 'kv260')."""
    n = str(name).strip().lower().replace("_", "-")
    return _ALIASES.get(n, n)


# ----------------------------------------------------------------------------------------------
# which board is this?

def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().replace(b"\x00", b"").decode("utf-8", "replace").strip()
    except OSError:
        return None


def detect_board(environ=None, root="/"):
    """The board we run on, as a boards.json name, or None off-board.

    Looks, in order, at: $MMFREE_BOARD (explicit override), $BOARD (set by PYNQ images and Kria-PYNQ),
    /proc/device-tree/chosen/pynq_board (PYNQ SD images), /proc/device-tree/model. ``root`` and
    ``environ`` exist for tests.
    """
    env = os.environ if environ is None else environ
    boards = load()[0]
    forced = env.get("MMFREE_BOARD")
    if forced:
        return get(forced) and normalize(forced)
    candidates = []
    if env.get("BOARD"):
        candidates.append(("pynq_board", env["BOARD"]))
    pb = _read(os.path.join(root, "proc", "device-tree", "chosen", "pynq_board"))
    if pb:
        candidates.append(("pynq_board", pb))
    model = _read(os.path.join(root, "proc", "device-tree", "model"))
    if model:
        candidates.append(("model", model))
    for kind, value in candidates:
        for name, b in boards.items():
            pats = b["detect"].get(kind, [])
            if kind == "pynq_board" and any(value.strip().lower() == p.lower() for p in pats):
                return name
            if kind == "model" and any(p.lower() in value.lower() for p in pats):
                return name
    return None


# ----------------------------------------------------------------------------------------------
# overlays: python/mmfree/overlays/<overlay_name>.bit + .hwh (found by pynq through the
# `pynq.overlays` entry point), manifest.json with the release URL and sha256 of each

def cma_table(sizes=None, packings=("base3", "2bit")):
    """[(board, size, packing, needed_bytes, stock_bytes, fits)] for every board and released model size:
    the CMA the driver allocates (mmfree.driver.buffer_plan, whole pages, 8 KiB minimum per buffer)
    against the board image's stock CMA (boards.json cma_bytes; its source under sources.cma)."""
    from types import SimpleNamespace
    from . import driver
    from .cycles import MODELS
    rows = []
    for board in names():
        stock = get(board)["cma_bytes"]
        for size, (d, layers, inter, vocab) in (sizes or MODELS).items():
            cfg = SimpleNamespace(hidden_size=d, intermediate_size=inter, vocab_size=vocab, num_hidden_layers=layers)
            for packing in packings:
                need = sum(driver.cma_footprint(nb) for _, _, _, nb in driver.buffer_plan(cfg, packing))
                rows.append((board, size, packing, need, stock, need <= stock))
    return rows


def cma_markdown():
    """The CMA table as markdown (docs/boards.md embeds this output; tests compare)."""
    out = ["| board | stock CMA | model | packing | CMA needed | fits the stock CMA |", "|---|---|---|---|---|---|"]
    for board, size, packing, need, stock, fits in cma_table():
        out.append("| %s | %d MiB | %s | %s | %.1f MiB | %s |" % (board, stock // 2**20, size, packing, need / 2**20,
                                                                 "yes" if fits else "**no**"))
    return "\n".join(out)


def overlay_dir():
    """The folder pynq searches for our overlays (the `pynq.overlays` entry point: mmfree.overlays)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "overlays")


def manifest():
    """python/mmfree/overlays/manifest.json as a dict {board: {...}}."""
    with open(os.path.join(overlay_dir(), "manifest.json"), "r", encoding="utf-8") as f:
        data = json.load(f)
    return {k: v for k, v in data.items() if not k.startswith("_")}


def overlay_files(board):
    """(bit, hwh) paths where the board's overlay must be (they may not exist)."""
    stem = os.path.join(overlay_dir(), get(board)["overlay_name"])
    return stem + ".bit", stem + ".hwh"


def _missing_message(board, missing):
    b = get(board)
    m = manifest().get(normalize(board), {})
    url = m.get("url") or ""
    if not url or m.get("published") is False:
        dl = ("no prebuilt bitstream is published yet for %s (manifest.json: %s)"
              % (board, m.get("status", "not yet published")))
    else:
        dl = "download %s, check sha256 %s, unpack the .bit and .hwh into that folder" % (url, m.get("sha256"))
    return (
        "overlay for %s not found: %s missing.\n"
        "  Build it on a workstation with Vitis HLS + Vivado %s: make overlay BOARD=%s\n"
        "  (writes overlay/%s/build/out/%s.bit and .hwh, also copied to python/mmfree/overlays/),\n"
        "  then copy both files, same stem, to %s on the board.\n"
        "  Or: %s.\n"
        "  See docs/boards.md."
        % (board, ", ".join(missing), b["vivado_version"], normalize(board), normalize(board),
           b["overlay_name"], overlay_dir(), dl))


def overlay_path(board=None):
    """The .bit path of a board's overlay (board=None: the detected board). Raises OverlayMissing,
    with what to do, when the .bit or its .hwh is not there; ConfigError off-board without a name."""
    if board is None:
        board = detect_board()
        if board is None:
            raise ConfigError("not running on a known board (no $BOARD, /proc/device-tree/chosen/pynq_board or "
                              "model match); pass the board name (%s)" % ", ".join(names()))
    bit, hwh = overlay_files(board)
    missing = [os.path.basename(p) for p in (bit, hwh) if not os.path.isfile(p)]
    if missing:
        raise OverlayMissing(_missing_message(board, missing))
    return bit


def load_overlay(board=None, download=True, **kwargs):
    """pynq.Overlay of the board's overlay (imports pynq here: on the board only)."""
    bit = overlay_path(board)
    try:
        import pynq  # noqa: F401
    except ImportError as e:  # pragma: no cover - off-board
        raise DeviceError("pynq is not installed: load_overlay runs on a PYNQ board image (%s)" % e)
    return pynq.Overlay(bit, download=download, **kwargs)


def sha256_file(path, chunk=1 << 20):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# resource model (model, not vendor-tool numbers): the kernel from the census of its code
# (mmfree.census: operators, banks, FIFOs, priced per family), the block design around it from
# the fixed figures below (the census cannot see it)

COST_MODEL = {
    # block design: SmartConnect per weight port + io/emb + control, s_axilite, AXI INTC, proc_sys_reset
    # (typical Vivado utilization of these IPs at 128-bit data; estimate)
    "smartconnect_lut": 700, "smartconnect_ff": 1000, "axilite_lut": 300, "axilite_ff": 400,
    "intc_lut": 300, "intc_ff": 400, "reset_lut": 40, "reset_ff": 60,
}
RESOURCES = ("lut", "ff", "bram36", "uram", "dsp")


def block_design_estimate(board):
    """LUT/FF of the block design around the kernel (SmartConnect per port, s_axilite, INTC, reset): fixed
    figures (COST_MODEL), the part the kernel census (mmfree.census) cannot see."""
    b, c = get(board), COST_MODEL
    n_sc = b["weight_ports"] + 2  # one per weight port, io+emb, control
    return {"lut": n_sc * c["smartconnect_lut"] + c["axilite_lut"] + c["intc_lut"] + c["reset_lut"],
            "ff": n_sc * c["smartconnect_ff"] + c["axilite_ff"] + c["intc_ff"] + c["reset_ff"]}


def resource_budget(board):
    """The board's PL resources {lut, ff, bram36, uram, dsp} (device data sheet numbers)."""
    r = get(board)["resources"]
    return {k: r[k] for k in RESOURCES}


def resource_estimate(board, census=None):
    """Estimated LUT, FF, BRAM36, URAM, DSP of the whole overlay on a board (model): the census of the
    kernel's code (mmfree.census, run or loaded from build/census/<board>.json) plus the block design.
    Returns the five totals plus 'census' (the file it came from)."""
    from . import census as _census
    res = census if census is not None else _census.load_or_run(normalize(board))
    out = {k: res["resources"][k]["used"] for k in RESOURCES}
    out["census"] = res.get("path")
    return out


def estimate_fits(board, margin=0.8, census=None):
    """(ok, {resource: fraction used}) with every fraction <= margin for ok (resources the board has none of
    must be unused)."""
    est, bud = resource_estimate(board, census), resource_budget(board)
    frac = {}
    ok = True
    for k in RESOURCES:
        if bud[k] == 0:
            frac[k] = 0.0 if est[k] == 0 else float("inf")
        else:
            frac[k] = est[k] / bud[k]
        ok = ok and frac[k] <= margin
    return ok, frac


def estimate_table():
    """Markdown table of the estimate for every board (docs embed this output)."""
    rows = ["| board | LUT | FF | BRAM36 | URAM | DSP |", "|---|---|---|---|---|---|"]
    for name in names():
        est, bud = resource_estimate(name), resource_budget(name)
        cells = []
        for k in RESOURCES:
            pct = "" if bud[k] == 0 else " (%d%%)" % round(100.0 * est[k] / bud[k])
            cells.append("{:,} / {:,}{}".format(est[k], bud[k], pct))
        rows.append("| %s | %s |" % (name, " | ".join(cells)))
    return "\n".join(rows)


if __name__ == "__main__":  # python -m mmfree.boards: the estimate table; --cma: the CMA table
    import sys
    print(cma_markdown() if "--cma" in sys.argv[1:] else estimate_table())
