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
# resource model (model, not vendor-tool numbers; docs/boards.md states it and its sources)

COST_MODEL = {
    # ternary lanes, per lane of one weight port (mux/negate of an int8 + its share of the adder tree)
    "lane_lut": 22, "lane_ff": 20,
    # base-3 byte decoder: 256 x 10-bit ROM in LUT6s (4 LUT6 per output bit)
    "base3_rom_lut": 40,
    # per weight port: accumulator, row/beat counters, packing mux
    "port_lut": 400, "port_ff": 500,
    # activation buffer q: one 8-bit bank per base-3 lane, <= 128 deep -> LUTRAM (2 x RAM64 per bit)
    "qbank_lut": 16,
    # vector unit, per float lane (16 lanes): 2 fmul (3 DSP, 80 LUT, 150 FF each), 1 fadd (2 DSP, 220 LUT,
    # 350 FF), int->float (150 LUT), float->int rounding (200 LUT), compare/abs (70 LUT), muxes and
    # pipeline registers (200 LUT, 400 FF)
    "vec_lane_lut": 1000, "vec_lane_ff": 1550, "vec_lane_dsp": 8,
    # shared: fdiv, fsqrt, exp2 polynomial, per-port accumulator scaling, 64-bit address generation,
    # op FSM
    "fixed_lut": 6000, "fixed_ff": 8000, "fixed_dsp": 16,
    # Vitis HLS m_axi adapter, per bundle (read-only / read-write), LUT and FF
    "maxi_ro_lut": 1300, "maxi_ro_ff": 2000, "maxi_rw_lut": 2200, "maxi_rw_ff": 3400,
    # m_axi burst buffers: num_outstanding x max_burst_length x width bits (UG1399 m_axi),
    # as in hls/mmfree_kernel/mmfree_kernel.cpp (tests/test_overlay.py checks the pragmas)
    "w_outstanding": 8, "w_burst": 256, "io_outstanding": 16, "io_burst": 256, "emb_burst": 256,
    "emb_bits": 16,
    # block design: SmartConnect per port, s_axilite, AXI INTC, proc_sys_reset
    "smartconnect_lut": 700, "smartconnect_ff": 1000, "axilite_lut": 300, "axilite_ff": 400,
    "intc_lut": 300, "intc_ff": 400, "reset_lut": 40, "reset_ff": 60,
    # on-chip arrays >= this many bytes go to URAM on UltraScale+ (needs BIND_STORAGE impl=uram in the
    # kernel; resource_estimate(board, uram_min_bytes=None) shows the all-BRAM case)
    "uram_min_bytes": 8192,
}
_VEC_LANES = 16


def _bram36_for(depth, width_bits):
    """BRAM36 count of a depth x width memory (36Kb primitives: 512x72, 1Kx36, 2Kx18, 4Kx9, 8Kx4 ...)."""
    best = None
    for d, w in ((512, 72), (1024, 36), (2048, 18), (4096, 9), (8192, 4), (16384, 2), (32768, 1)):
        n = -(-depth // d) * -(-width_bits // w)
        best = n if best is None else min(best, n)
    return best


def _uram_for(depth, width_bits):
    """URAM288 count (4K x 72)."""
    return -(-depth // 4096) * -(-width_bits // 72)


def onchip_arrays(board):
    """The kernel's on-chip arrays as (name, depth, width_bits), from the board's compiled maxima
    (hls/mmfree_kernel/mmfree_kernel.cpp and hls/include/mmfree_config.h)."""
    b = get(board)
    d, inter, ports = b["max_d"], b["max_inter"], b["weight_ports"]
    port_bytes = b["port_bits"] // 8
    max_rows = max(2 * inter, d)
    rpp = -(-max_rows // ports)
    max_prm = 8 + 9 * (-(-d // 4) * 4) + -(-inter // 4) * 4
    head_chunk = (max_rows // 4) * 4
    arrays = [("x_buf", d, 32), ("h_buf", d, 32), ("yi_buf", d, 32), ("yf_buf", d, 32), ("yg_buf", d, 32),
              ("o_buf", d, 32), ("y_buf", d, 32), ("gu_buf", 2 * inter, 32), ("z_buf", inter, 32),
              ("prm_buf", max_prm, 32), ("out_buf", head_chunk, 32)]
    arrays += [("acc_buf[%d]" % p, rpp, 32) for p in range(ports)]
    max_k = max(d, inter)
    min_lanes = port_bytes * 4
    max_beats = -(-max_k // min_lanes) + 16 // port_bytes
    return arrays, ("q_buf", max_beats, port_bytes * 5)


_DEFAULT = object()


def resource_estimate(board, uram_min_bytes=_DEFAULT):
    """Estimated LUT, FF, BRAM36, URAM, DSP of the whole overlay on a board (model; docs/boards.md).

    uram_min_bytes: arrays at least this large go to URAM on boards that have URAM (default
    COST_MODEL['uram_min_bytes']; None: everything in BRAM). Returns a dict with the five totals plus
    'parts' (the same five numbers per component)."""
    b, c = get(board), COST_MODEL
    if uram_min_bytes is _DEFAULT:
        uram_min_bytes = c["uram_min_bytes"]
    ports, bits = b["weight_ports"], b["port_bits"]
    port_bytes = bits // 8
    lanes2, lanes3 = bits // 2, port_bytes * 5
    use_uram = b["resources"]["uram"] > 0 and uram_min_bytes is not None
    parts = {}

    def add(name, lut=0, ff=0, bram=0, uram=0, dsp=0):
        parts[name] = {"lut": int(lut), "ff": int(ff), "bram36": int(bram), "uram": int(uram), "dsp": int(dsp)}

    lane_lut = ports * ((lanes2 + lanes3) * c["lane_lut"] + port_bytes * c["base3_rom_lut"] + c["port_lut"])
    lane_ff = ports * ((lanes2 + lanes3) * c["lane_ff"] + c["port_ff"])
    arrays, (_, qdepth, qbanks) = onchip_arrays(board)
    add("ternary lanes (%d ports x %d+%d lanes)" % (ports, lanes2, lanes3), lane_lut + qbanks * c["qbank_lut"], lane_ff)
    add("vector unit (%d float lanes + shared units)" % _VEC_LANES,
        _VEC_LANES * c["vec_lane_lut"] + c["fixed_lut"], _VEC_LANES * c["vec_lane_ff"] + c["fixed_ff"],
        dsp=_VEC_LANES * c["vec_lane_dsp"] + c["fixed_dsp"])
    bram = uram = 0
    for _, depth, width in arrays:
        if use_uram and depth * width // 8 >= uram_min_bytes:
            uram += _uram_for(depth, width)
        else:
            bram += _bram36_for(depth, width)
    add("on-chip arrays (%s)" % ("URAM for >= %d KiB" % (uram_min_bytes // 1024) if use_uram else "BRAM"),
        bram=bram, uram=uram)
    w_buf = _bram36_for(c["w_outstanding"] * c["w_burst"], bits)
    io_buf = 2 * _bram36_for(c["io_outstanding"] * c["io_burst"], bits)
    emb_buf = _bram36_for(c["io_outstanding"] * c["emb_burst"], c["emb_bits"])
    add("m_axi adapters (%d weight, io, emb)" % ports,
        ports * c["maxi_ro_lut"] + c["maxi_rw_lut"] + c["maxi_ro_lut"],
        ports * c["maxi_ro_ff"] + c["maxi_rw_ff"] + c["maxi_ro_ff"],
        bram=ports * w_buf + io_buf + emb_buf)
    n_sc = ports + 2  # one per weight port, io+emb, control
    add("block design (%d SmartConnect, s_axilite, INTC, reset)" % n_sc,
        n_sc * c["smartconnect_lut"] + c["axilite_lut"] + c["intc_lut"] + c["reset_lut"],
        n_sc * c["smartconnect_ff"] + c["axilite_ff"] + c["intc_ff"] + c["reset_ff"])
    total = {k: sum(p[k] for p in parts.values()) for k in ("lut", "ff", "bram36", "uram", "dsp")}
    total["parts"] = parts
    return total


def resource_budget(board):
    """The board's PL resources {lut, ff, bram36, uram, dsp} (device data sheet numbers)."""
    r = get(board)["resources"]
    return {k: r[k] for k in ("lut", "ff", "bram36", "uram", "dsp")}


def estimate_fits(board, margin=0.8):
    """(ok, {resource: fraction used}) with every fraction <= margin for ok (resources the board has none of
    must be unused)."""
    est, bud = resource_estimate(board), resource_budget(board)
    frac = {}
    ok = True
    for k in ("lut", "ff", "bram36", "uram", "dsp"):
        if bud[k] == 0:
            frac[k] = 0.0 if est[k] == 0 else float("inf")
        else:
            frac[k] = est[k] / bud[k]
        ok = ok and frac[k] <= margin
    return ok, frac


def estimate_table(margin=0.8):
    """Markdown table of the estimate for every board (docs/boards.md embeds this output)."""
    rows = ["| board | LUT | FF | BRAM36 | URAM | DSP |", "|---|---|---|---|---|---|"]
    for name in names():
        est, bud = resource_estimate(name), resource_budget(name)
        cells = []
        for k in ("lut", "ff", "bram36", "uram", "dsp"):
            pct = "" if bud[k] == 0 else " (%d%%)" % round(100.0 * est[k] / bud[k])
            cells.append("{:,} / {:,}{}".format(est[k], bud[k], pct))
        rows.append("| %s | %s |" % (name, " | ".join(cells)))
    return "\n".join(rows)


if __name__ == "__main__":  # python -m mmfree.boards: the estimate table; --cma: the CMA table
    import sys
    print(cma_markdown() if "--cma" in sys.argv[1:] else estimate_table())
