"""Board driver of ``mmfree_kernel`` on the pynq API (pynq 3.0.1, 3.1 and 4.0), also run by the emulator.

    from mmfree.driver import Accelerator, open_board
    acc = open_board("model.safetensors", bitfile="mmfree.bit")   # pynq.Overlay + Accelerator
    logits = acc.prefill([1, 2, 3])       # float32 [V] for the last prompt token
    logits = acc.step(token)              # one decode step; state kept on the device
    acc.reset()                           # zero the recurrent state between prompts

Pieces:

- ``MMFreeKernel``: the IP driver (a ``pynq.DefaultIP`` subclass bound by VLNV through ``bindto``
  when pynq is present; the same class over the emulator's register file, ``mmfree.emu``). Register
  writes go through ``self.mmio.read/write`` (one 32-bit word each; 64-bit addresses as two words,
  low word first), completion is polled on ap_done/ap_idle with a timeout. No ``.call()`` (gone on
  embedded boards since pynq 3.1).
- ``REGISTERS``: the register map, kept here because hls/ is not installed on a board;
  tests/test_driver.py checks it against hls/include/mmfree_regs.h and the HLS INTERFACE pragmas.
- ``Accelerator``: loads a packed model once into contiguous ``allocate`` buffers (the weights
  arena: every layer blob at a 4 KB-aligned stride then the head blob, in one buffer; the
  embeddings; x, the recurrent state [L, pad4(d)] and the logits in their own buffers), checks first
  that it fits the overlay's compiled maxima and the CMA memory, and runs each token in ONE kernel
  call: OP_TOKEN for a decode token (EMBED, every layer, HEAD in the kernel), OP_BODY for a prompt
  token but the last. Every register but OP and TOKEN is written once at load, so a decode token
  costs a handful of MMIO accesses (TOKEN, CTRL start, CTRL polls). If the arena cannot be allocated
  in one piece (CMA fragmentation), it says so once and falls back to one buffer per layer and one
  call per op (EMBED, L x LAYER, HEAD: L + 2 calls per token).

pynq is imported only where it is needed: when already imported, on a board (an FPGA manager is
present), or with ``MMFREE_PYNQ=1``; ``MMFREE_PYNQ=0`` never imports it.
"""

import os
import sys
import time
import warnings
from typing import Dict, List, Optional, Sequence

import numpy as np

from . import boards
from .errors import BusError, ConfigError, DeviceError, KernelTimeout, ModelTooLarge
from .layout import (arena_layout, head_layout, layer_layout, layer_stride, pack_arena, pack_head_blob,
                     pack_layer_blob, pad4)

VLNV = "xilinx.com:hls:mmfree_kernel:1.0"
VLNV_PREFIX = "xilinx.com:hls:mmfree_kernel:"

# ---------------------------------------------------------------------------------------------
# register map (hls/include/mmfree_regs.h, version 4: six weight-port address registers, LAYERS,
# whole-token ops BODY and TOKEN, the identity block ID_* and OP_IDENT)
# ---------------------------------------------------------------------------------------------
REGS_VERSION = 4
REGISTERS: Dict[str, int] = {
    "CTRL": 0x00, "GIE": 0x04, "IER": 0x08, "ISR": 0x0C,
    "OP": 0x10, "D": 0x18, "INTER": 0x20, "VOCAB": 0x28, "PACKING": 0x30, "TOKEN": 0x38,
    "X_ADDR": 0x40, "H_ADDR": 0x4C, "EMB_ADDR": 0x58, "OUT_ADDR": 0x64,
    "W0_ADDR": 0x70, "W1_ADDR": 0x7C, "W2_ADDR": 0x88, "W3_ADDR": 0x94, "W4_ADDR": 0xA0, "W5_ADDR": 0xAC,
    "LAYERS": 0xB8,
    "ID_MAGIC": 0xC0, "ID_VERSION": 0xC8, "ID_CONFIG": 0xD0, "ID_MAX_D": 0xD8, "ID_MAX_INTER": 0xE0,
    "ID_MAX_VOCAB": 0xE8, "ID_MAX_LAYERS": 0xF0, "ID_CLOCK_KHZ": 0xF8,
}
REG_SPAN = 0x100
MAX_WEIGHT_PORT_REGS = 6
AP_START, AP_DONE, AP_IDLE, AP_READY = 0x1, 0x2, 0x4, 0x8
OP_EMBED, OP_LAYER, OP_HEAD, OP_BODY, OP_TOKEN, OP_IDENT = 0, 1, 2, 3, 4, 5
OP_NAMES = {OP_EMBED: "EMBED", OP_LAYER: "LAYER", OP_HEAD: "HEAD", OP_BODY: "BODY", OP_TOKEN: "TOKEN",
            OP_IDENT: "IDENT"}
ID_MAGIC = 0x4D4D4652  # "MMFR"
ID_CONFIG_SHIFTS = {"weight_ports": 0, "port_bits": 8, "float_lanes": 16, "sigmoid_lanes": 24}  # 8-bit fields of ID_CONFIG
CLOCK_TOLERANCE = 0.005  # a PL clock this far from the build's target is reported
PACKING_CODE = {"2bit": 0, "base3": 1}

# ---------------------------------------------------------------------------------------------
# DDR layout: mmfree.layout (numpy only; tests check it against the C library)
# ---------------------------------------------------------------------------------------------
PAGE = 4096
MIN_BO_BYTES = 8192  # XRT allocates at least 8 KiB per buffer (pynq >= 3.1)


def buffer_plan(cfg, packing: str, arena: bool = True) -> List[tuple]:
    """[(name, shape, dtype, nbytes)] of every buffer the Accelerator allocates for a model: the weights
    in one arena (``arena``), or one blob per layer and a head blob (the per-op fallback)."""
    d, inter, vocab, n = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, cfg.num_hidden_layers
    plan = [("embeddings", (vocab, d), np.uint16, 2 * vocab * d)]
    if arena:
        ab = arena_layout(n, d, inter, vocab, packing)["bytes"]
        plan += [("weights", (ab,), np.uint8, ab)]
    else:
        lb = layer_layout(d, inter, packing)["bytes"]
        hb = head_layout(d, vocab, packing)["bytes"]
        plan += [(f"layer{li}", (lb,), np.uint8, lb) for li in range(n)]
        plan += [("head", (hb,), np.uint8, hb)]
    plan += [
             ("x", (pad4(d),), np.float32, 4 * pad4(d)),
             ("h", (n, pad4(d)), np.float32, 4 * n * pad4(d)),
             ("logits", (pad4(vocab),), np.float32, 4 * pad4(vocab))]
    return plan


def cma_footprint(nbytes: int) -> int:
    """CMA bytes one buffer of nbytes takes (whole pages, at least 8 KiB)."""
    return max(MIN_BO_BYTES, -(-nbytes // PAGE) * PAGE)


# ---------------------------------------------------------------------------------------------
# boards
# ---------------------------------------------------------------------------------------------
def board_params(board: str) -> dict:
    """One board's parameters from boards.json (mmfree.boards), with its canonical ``name``."""
    return dict(boards.get(board), name=boards.normalize(board))


def detect_board() -> Optional[str]:
    """The board this runs on (mmfree.boards.detect_board), or None."""
    return boards.detect_board()


def on_board() -> bool:
    """True on a Zynq board that runs Linux with an FPGA manager (where pynq can drive the PL)."""
    return os.path.exists("/sys/class/fpga_manager/fpga0") or os.path.exists("/proc/device-tree/chosen/pynq_board")


def pynq_available() -> bool:
    import importlib.util
    return os.environ.get("MMFREE_PYNQ") != "0" and importlib.util.find_spec("pynq") is not None


# ---------------------------------------------------------------------------------------------
# the IP driver
# ---------------------------------------------------------------------------------------------
class _IPBase:
    """Stand-in for pynq.DefaultIP where pynq is not imported: register access through
    ``description["mmio"]`` (the emulator's register file)."""

    def __init__(self, description):
        self.description = description
        self.mmio = description["mmio"]
        self.fullpath = description.get("fullpath", "mmfree_kernel_0")

    def read(self, offset=0):
        return self.mmio.read(offset)

    def write(self, offset, value):
        self.mmio.write(offset, value)


def _want_pynq() -> bool:
    flag = os.environ.get("MMFREE_PYNQ")
    if flag == "0":
        return False
    return flag == "1" or "pynq" in sys.modules or on_board()


_Base = _IPBase
HAVE_PYNQ = False
if _want_pynq():
    try:
        from pynq import DefaultIP as _Base  # noqa: F811
        HAVE_PYNQ = True
    except Exception:  # pynq absent or broken off-board: the driver still works over the emulator
        _Base = _IPBase


class MMFreeKernel(_Base):
    """Driver of one ``mmfree_kernel`` IP. Bound by VLNV on pynq; built by mmfree.emu over its
    register file (a description with an ``mmio`` entry)."""

    bindto = [VLNV]

    def __init__(self, description):
        if isinstance(description, dict) and description.get("mmio") is not None and _Base is not _IPBase:
            _IPBase.__init__(self, description)  # emulated IP under an imported pynq: no pynq.MMIO
        else:
            super().__init__(description)
        self._shadow: Dict[int, int] = {}
        self.calls = 0

    # ------------------------------------------------------------------ registers
    def write_reg(self, name: str, value: int, cached: bool = True) -> None:
        """One 32-bit register. With ``cached``, skip the write if the value is already there."""
        off = REGISTERS[name]
        v = int(value)
        if not 0 <= v <= 0xFFFFFFFF:
            raise ValueError(f"register {name}: {v:#x} does not fit 32 bits")
        if cached and self._shadow.get(off) == v:
            return
        self.mmio.write(off, v)
        self._shadow[off] = v

    def write_addr(self, name: str, addr: int) -> None:
        """A 64-bit address register: low word at its offset, high word at offset + 4."""
        off = REGISTERS[name]
        a = int(addr)
        if a < 0 or a >= 1 << 64:
            raise ValueError(f"register {name}: address {a:#x} is not a 64-bit address")
        for o, v in ((off, a & 0xFFFFFFFF), (off + 4, a >> 32)):
            if self._shadow.get(o) != v:
                self.mmio.write(o, v)
                self._shadow[o] = v

    def read_reg(self, name: str) -> int:
        return int(self.mmio.read(REGISTERS[name]))

    def forget_registers(self) -> None:
        """Drop the shadow copy (after an overlay reload: every register is written again)."""
        self._shadow.clear()

    def ctrl(self) -> int:
        """CTRL (reading it clears ap_done on the hardware)."""
        return int(self.mmio.read(0))

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        self.mmio.write(REGISTERS["CTRL"], AP_START)
        self.calls += 1

    def wait(self, timeout_s: float = 5.0, what: str = "call") -> None:
        """Poll CTRL until the call is finished (ap_done, or ap_idle with ap_start taken)."""
        read = self.mmio.read
        ctrl = int(read(0))
        if ctrl & AP_DONE or (ctrl & AP_IDLE and not ctrl & AP_START):
            return
        deadline = time.monotonic() + timeout_s
        while True:
            ctrl = int(read(0))
            if ctrl & AP_DONE or (ctrl & AP_IDLE and not ctrl & AP_START):
                return
            if time.monotonic() > deadline:
                state = "ap_start never taken" if ctrl & AP_START else "ap_idle never set"
                raise KernelTimeout(f"mmfree_kernel timed out after {timeout_s:g} s on {what} (CTRL={ctrl:#x}: "
                                    f"{state}); the kernel is hung: reload the overlay before the next run")

    def check_idle(self) -> None:
        ctrl = self.ctrl()
        if not ctrl & AP_IDLE:
            raise DeviceError(f"mmfree_kernel is not idle (CTRL={ctrl:#x}) before the first call: a previous "
                              "run hung or is still running; reload the overlay")

    def identify(self, timeout_s: float = 1.0) -> dict:
        """Run one OP_IDENT call and read the identity block: {magic, regs_version, weight_ports, port_bits,
        float_lanes, sigmoid_lanes, max_d, max_inter, max_vocab, max_layers, clock_mhz}. The block is written by every call
        (Vitis HLS has no constant read-only register), so it reads 0 until the first call: hence the call.
        A kernel older than register map version 4 ignores the unknown op, returns at once and leaves 0s."""
        self.write_reg("OP", OP_IDENT, cached=False)
        self.start()
        self.wait(timeout_s, "op IDENT (reading the identity registers at open)")
        ident = {"magic": self.read_reg("ID_MAGIC"), "regs_version": self.read_reg("ID_VERSION")}
        cfg = self.read_reg("ID_CONFIG")
        for key, shift in ID_CONFIG_SHIFTS.items():
            ident[key] = (cfg >> shift) & 0xFF
        for key in ("max_d", "max_inter", "max_vocab", "max_layers"):
            ident[key] = self.read_reg("ID_" + key.upper())
        ident["clock_mhz"] = self.read_reg("ID_CLOCK_KHZ") / 1000.0
        return ident


# ---------------------------------------------------------------------------------------------
# the accelerator: model in buffers, token schedule
# ---------------------------------------------------------------------------------------------
def _phys(buf) -> int:
    addr = getattr(buf, "device_address", None)
    if addr is None:
        addr = buf.physical_address
    return int(addr)


def find_kernel(overlay):
    """The mmfree_kernel IP object of an overlay (by VLNV in ip_dict), as an MMFreeKernel."""
    for name, desc in overlay.ip_dict.items():
        if str(desc.get("type", "")).startswith(VLNV_PREFIX):
            ip = overlay
            try:
                for part in name.split("/"):
                    ip = getattr(ip, part)
            except AttributeError:
                ip = None
            if isinstance(ip, MMFreeKernel):
                return ip
            # bound to DefaultIP (driver imported after the Overlay was made): rebind over the same registers
            return MMFreeKernel(desc)
    types = sorted({str(d.get("type")) for d in overlay.ip_dict.values()})
    raise DeviceError(f"the overlay has no {VLNV_PREFIX}* IP (it has: {', '.join(types) or 'no IP'})")


class StaleOverlay(DeviceError):
    """The overlay's mmfree_kernel was built from another register map or for another board."""


def check_identity(ident: dict, board: Optional[str] = None) -> dict:
    """Refuse a stale or foreign overlay (StaleOverlay, saying what was found and what was expected); returns
    the overlay's limits {max_d, max_inter, max_vocab, max_layers, weight_ports} from its identity block."""
    found_magic = int(ident.get("magic", 0))
    rebuild = ("rebuild the overlay from this source tree (make overlay BOARD={b}; docs/boards.md) or install "
               "the mmfree version that built it").format(b=board or "<board>")
    if found_magic != ID_MAGIC:
        if found_magic == 0:
            what = ("no identity block (0x00000000 at ID_MAGIC 0xc0): a stale overlay, built from register map "
                    f"version 3 or older")
        else:
            what = f"ID_MAGIC 0x{found_magic:08x}: not an mmfree kernel (a foreign IP under the same VLNV)"
        raise StaleOverlay(f"stale or foreign overlay: found {what}; expected ID_MAGIC 0x{ID_MAGIC:08x} ('MMFR') "
                           f"and register map version {REGS_VERSION}. {rebuild[0].upper() + rebuild[1:]}")
    if ident.get("regs_version") != REGS_VERSION:
        raise StaleOverlay(f"stale overlay: its kernel speaks register map version {ident.get('regs_version')}, this "
                           f"driver version {REGS_VERSION} (hls/include/mmfree_regs.h); {rebuild}")
    if board:
        b = board_params(board)
        want = (b["weight_ports"], b["port_bits"])
        have = (ident.get("weight_ports"), ident.get("port_bits"))
        if have != want:
            raise StaleOverlay(f"foreign overlay: built for {have[0]} weight ports of {have[1]} bits, board {b['name']} "
                               f"has {want[0]} of {want[1]} (boards.json): an overlay for another board; {rebuild}")
    return {k: int(ident[k]) for k in ("max_d", "max_inter", "max_vocab", "max_layers", "weight_ports")}


def read_pl_clock(overlay=None, index: int = 0) -> Optional[float]:
    """The PL clock ``index`` in MHz as the board runs it now: the emulated overlay's ``fclk_mhz``, else
    ``pynq.Clocks.fclk<index>_mhz`` (read from the PS clock registers after the bitstream loaded). None when
    it cannot be read (pynq absent, or not on a board)."""
    own = getattr(overlay, "fclk_mhz", None) if overlay is not None else None
    if own is not None:
        return float(own)
    if not HAVE_PYNQ:
        return None
    try:
        from pynq import Clocks
        return float(getattr(Clocks, f"fclk{index}_mhz"))
    except Exception:  # off-board pynq: no PS clock registers
        return None


def check_clock(actual_mhz: Optional[float], target_mhz: Optional[float], board: Optional[str] = None) -> Optional[str]:
    """A warning text when the PL clock differs from the build's target by more than CLOCK_TOLERANCE, else None."""
    if actual_mhz is None or not target_mhz:
        return None
    if abs(actual_mhz - target_mhz) <= CLOCK_TOLERANCE * target_mhz:
        return None
    hint = ""
    if board:
        pll = board_params(board)["pl_clock"].get("pll_mhz")
        if pll:
            hint = (f"; on {board} PYNQ makes PL clocks as IOPLL {pll:g} MHz / n "
                    f"({', '.join(f'{pll / n:.1f}' for n in range(3, 9))} MHz)")
    return (f"PL clock 0 runs at {actual_mhz:.3f} MHz, the overlay was built for {target_mhz:.3f} MHz{hint}. "
            f"Performance figures use {actual_mhz:.3f} MHz; if it is faster than the build's target, timing was "
            "not closed for it: rebuild the overlay for the clock the image can make (boards.json clock_mhz) or "
            "set it with pynq.Clocks.fclk0_mhz")


def overlay_limits(overlay=None, board: Optional[str] = None) -> dict:
    """Compiled maxima and weight ports: the overlay's own (the emulator knows its build), else boards.json."""
    own = getattr(overlay, "mmfree_limits", None) if overlay is not None else None
    if own:
        return dict(own)
    b = board_params(board or detect_board() or "kv260")
    return {k: b[k] for k in ("max_d", "max_inter", "max_vocab", "max_layers", "weight_ports")}


def cma_available(overlay=None, board: Optional[str] = None) -> int:
    """CMA bytes for buffers: the overlay's (emulator), /proc/meminfo CmaFree on a board, else boards.json."""
    own = getattr(overlay, "cma_bytes", None) if overlay is not None else None
    if own:
        return int(own)
    if on_board():
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("CmaFree:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
    return int(board_params(board or detect_board() or "kv260")["cma_bytes"])


def check_fits(cfg, packing: str, limits: dict, cma_bytes: int, arena: bool = True, board: Optional[str] = None) -> int:
    """Raise ModelTooLarge if the model exceeds the overlay's maxima or the CMA; returns CMA bytes needed
    (for the arena plan, or the per-layer plan with ``arena=False``: never less than the arena's)."""
    dims = (("hidden_size", cfg.hidden_size, "max_d"), ("intermediate_size", cfg.intermediate_size, "max_inter"),
            ("vocab_size", cfg.vocab_size, "max_vocab"), ("num_hidden_layers", cfg.num_hidden_layers, "max_layers"))
    for what, have, key in dims:
        if key in limits and have > limits[key]:
            raise ModelTooLarge(f"model {what}={have} exceeds the overlay's compiled {key}={limits[key]}; "
                                "this overlay cannot run it (build one for a larger board or use a smaller model)")
    need = sum(cma_footprint(nb) for _, _, _, nb in buffer_plan(cfg, packing, arena))
    if need > cma_bytes:
        raise ModelTooLarge(cma_message(need, cma_bytes, board, packing))
    return need


def cma_message(need: int, have: int, board: Optional[str] = None, packing: Optional[str] = None) -> str:
    """What a model too large for the CMA needs, and how to get it on the board's image."""
    b = boards.normalize(board) if board else None
    smaller = "use a smaller model" + (" or the base3 packing (about 15 % smaller)" if packing == "2bit" else "")
    msg = (f"model needs {need / 2**20:.1f} MiB of contiguous (CMA) memory, {have / 2**20:.1f} MiB are free "
           f"(CmaFree in /proc/meminfo on a board); {-(-(need - have) // 2**20)} MiB more are needed. ")
    if b == "kv260":
        how = ("On Kria Ubuntu the CMA (1000 MiB) is set by the boot script's cma= argument: free CMA first "
               f"(close other overlays and notebooks that hold buffers), or {smaller}.")
    elif b in ("zcu104", "pynq-z2"):
        how = ("On PYNQ SD images the CMA is the device-tree node reserved-memory/linux,cma (size), not a cma= "
               "boot argument: enlarge its size in the image's device tree and reboot (docs/boards.md, "
               f"'A larger CMA'), or {smaller}.")
    else:
        how = f"{smaller[0].upper() + smaller[1:]}, or enlarge the CMA (docs/boards.md, 'A larger CMA')."
    return msg + how


class Accelerator:
    """A packed model loaded on an mmfree overlay (pynq.Overlay or mmfree.emu.Overlay).

    ``arena=True`` (default): the weights in one contiguous buffer and one kernel call per token
    (``mode == "token"``); if that buffer cannot be allocated, or ``arena=False``, one buffer per layer
    and one call per op (``mode == "per-op"``, ``fallback_reason`` says why when it was not asked for).
    """

    def __init__(self, overlay, model, board: Optional[str] = None, limits: Optional[dict] = None,
                 cma_bytes: Optional[int] = None, timeout_s: float = 5.0, allocate=None, cacheable: bool = True,
                 arena: bool = True):
        from . import packed as pk

        self.packed = model if isinstance(model, pk.PackedModel) else pk.load(model)
        cfg = self.config = self.packed.config
        self.d, self.inter, self.vocab = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
        self.n_layers = cfg.num_hidden_layers
        self.overlay, self.timeout_s = overlay, timeout_s
        self.board = boards.normalize(board or getattr(overlay, "board", None) or detect_board() or "kv260")
        # the kernel first: its identity block says what it was built for (a stale overlay stops here)
        self.ip = find_kernel(overlay)
        self.ip.check_idle()
        self.identity = self.ip.identify(timeout_s=min(float(timeout_s), 1.0))
        own = check_identity(self.identity, self.board)
        self.limits = dict(limits) if limits else dict(getattr(overlay, "mmfree_limits", None) or own)
        # the PL clock the image set (pynq.Clocks after the download), against the build's target
        self.clock_target_mhz = float(self.identity["clock_mhz"])
        self.clock_mhz = read_pl_clock(overlay)
        self.clock_warning = check_clock(self.clock_mhz, self.clock_target_mhz, self.board)
        if self.clock_warning:
            warnings.warn("mmfree: " + self.clock_warning, RuntimeWarning, stacklevel=2)
        self.cma_bytes = int(cma_bytes) if cma_bytes else cma_available(overlay, board)
        arena = bool(arena) and self.n_layers >= 1
        self.cma_needed = check_fits(cfg, self.packed.packing, self.limits, self.cma_bytes, arena=arena,
                                     board=self.board)
        self.ports = int(self.limits.get("weight_ports", MAX_WEIGHT_PORT_REGS))
        if not 1 <= self.ports <= MAX_WEIGHT_PORT_REGS:
            raise ConfigError(f"weight_ports={self.ports}: this driver knows {MAX_WEIGHT_PORT_REGS} weight-port registers")
        if allocate is None:
            allocate = getattr(overlay, "allocate", None)
        if allocate is None:
            from pynq import allocate
        self._allocate = allocate
        self.buffers: List = []
        self.weights = None
        self.mode = "per-op"
        self.fallback_reason: Optional[str] = None
        self._arena_regs = False
        try:
            self._load(cacheable, arena)
        except Exception:
            self.close()
            raise
        self.tokens = 0

    def describe(self) -> str:
        """One line: what the overlay's identity block says and the PL clock it runs at."""
        i = self.identity
        clock = "unknown (pynq.Clocks not readable)" if self.clock_mhz is None else f"{self.clock_mhz:.3f} MHz"
        return (f"mmfree_kernel: register map v{i['regs_version']}, {i['weight_ports']} weight ports x {i['port_bits']} "
                f"bit, maxima d {i['max_d']} I {i['max_inter']} V {i['max_vocab']} L {i['max_layers']}; PL clock 0 "
                f"{clock} (build target {self.clock_target_mhz:.3f} MHz); CMA {self.cma_needed / 2**20:.1f} of "
                f"{self.cma_bytes / 2**20:.1f} MiB; {self.mode} mode")

    # ------------------------------------------------------------------ loading
    def _alloc(self, shape, dtype, cacheable):
        try:
            try:
                buf = self._allocate(shape=shape, dtype=dtype, cacheable=cacheable)
            except TypeError:  # an allocator without the cacheable keyword
                buf = self._allocate(shape=shape, dtype=dtype)
        except AttributeError as e:
            if "device" in str(e) and "not writable" in str(e):  # pynq 3.0.1 under numpy 2 (PYNQ#1456)
                raise DeviceError(f"pynq.allocate failed under numpy {np.__version__}: {e}. pynq 3.0.1 (Kria-PYNQ) "
                                  "needs numpy<2: run python3 -m pip install \"numpy<2\" in the pynq venv "
                                  "(docs/boards.md, section 8)") from None
            raise
        self.buffers.append(buf)
        return buf

    def _check_inputs(self):
        """The kernel never meets a NaN or infinity that a valid model does not hold: every float
        tensor (the bf16 embeddings included) is checked here, whatever built the PackedModel."""
        from .packed import bf16_finite
        m = self.packed
        if not bf16_finite(m.tensor("embeddings")).all():
            raise ConfigError(f"{m.path}: tensor 'embeddings' holds NaN or infinity; refusing to load it")
        for name in m.names:
            a = m.tensor(name)
            if a.dtype == np.float32 and not np.all(np.isfinite(a)):
                raise ConfigError(f"{m.path}: tensor {name!r} holds NaN or infinity; refusing to load it")

    def _load(self, cacheable, arena):
        m, cfg = self.packed, self.config
        L = self.n_layers
        self._check_inputs()
        self.emb = self._alloc((self.vocab, self.d), np.uint16, cacheable)
        self.emb[:] = np.asarray(m.tensor("embeddings"), np.uint16)
        if arena:
            lay = arena_layout(L, self.d, self.inter, self.vocab, m.packing)
            try:
                self.weights = self._alloc((lay["bytes"],), np.uint8, cacheable)
            except Exception as e:  # CMA fragmented (no contiguous block that large), or exhausted
                self.fallback_reason = f"{type(e).__name__}: {e}"
                warnings.warn(f"mmfree: the {lay['bytes'] / 2**20:.1f} MiB weights arena could not be allocated in one "
                              f"contiguous buffer ({self.fallback_reason}); falling back to one buffer per layer and "
                              f"one kernel call per op ({L + 2} calls per token instead of 1)", RuntimeWarning,
                              stacklevel=3)
                self.cma_needed = check_fits(cfg, m.packing, self.limits, self.cma_bytes, arena=False, board=self.board)
        if self.weights is not None:
            pack_arena(m, self.weights, ports=self.ports)
            base = _phys(self.weights)
            lb = layer_layout(self.d, self.inter, m.packing)["bytes"]
            self.blobs = [self.weights[off:off + lb] for off in lay["layers"]]   # views, for inspection
            self.head = self.weights[lay["head"]:]
            self.blob_addr = [base + off for off in lay["layers"]]
            self.head_addr = base + lay["head"]
            self.arena = lay
            self.mode = "token"
        else:
            plan = {name: (shape, dt) for name, shape, dt, _ in buffer_plan(cfg, m.packing, arena=False)}
            self.blobs = []
            for li in range(L):
                b = self._alloc(*plan[f"layer{li}"], cacheable)
                pack_layer_blob(m, li, b, ports=self.ports)
                self.blobs.append(b)
            self.head = self._alloc(*plan["head"], cacheable)
            pack_head_blob(m, self.head, ports=self.ports)
            self.blob_addr = [_phys(b) for b in self.blobs]
            self.head_addr = _phys(self.head)
            self.arena = None
        self.x = self._alloc((pad4(self.d),), np.float32, cacheable)
        self.h = self._alloc((L, pad4(self.d)), np.float32, cacheable)
        self.out = self._alloc((pad4(self.vocab),), np.float32, cacheable)
        self.x[:] = 0
        self.h[:] = 0
        self.out[:] = 0
        for b in self.buffers:
            b.flush()
        h0, hstride = _phys(self.h), 4 * pad4(self.d)
        self.h_addr = [h0 + li * hstride for li in range(L)]
        self._write_constants()

    def _write_constants(self):
        """Every register that does not change per token, once (after an overlay reload: again)."""
        ip = self.ip
        ip.forget_registers()
        ip.write_reg("D", self.d)
        ip.write_reg("INTER", self.inter)
        ip.write_reg("VOCAB", self.vocab)
        ip.write_reg("PACKING", PACKING_CODE[self.packed.packing])
        ip.write_reg("LAYERS", self.n_layers)
        ip.write_addr("X_ADDR", _phys(self.x))
        ip.write_addr("EMB_ADDR", _phys(self.emb))
        ip.write_addr("OUT_ADDR", _phys(self.out))
        self._arena_regs = False
        if self.mode == "token":
            self._point_at_arena()

    def _point_at_arena(self):
        """W0..W(ports-1) = the weights arena, H_ADDR = state row 0 (written only where they differ)."""
        ip = self.ip
        for p in range(self.ports):
            ip.write_addr(f"W{p}_ADDR", self.blob_addr[0])
        ip.write_addr("H_ADDR", self.h_addr[0])
        self._arena_regs = True

    # ------------------------------------------------------------------ per call
    def _run(self, op: int, what: str, weights: Optional[int] = None, h: Optional[int] = None,
             token: Optional[int] = None):
        """One kernel call: OP (written only when it changes), TOKEN, H_ADDR and the W registers when
        given, start, poll until done. ``what`` names the op and the token in a timeout error."""
        ip = self.ip
        ip.write_reg("OP", op)
        if token is not None:
            ip.write_reg("TOKEN", token)
        if h is not None:
            self._arena_regs = False
            ip.write_addr("H_ADDR", h)
        if weights is not None:
            self._arena_regs = False
            for p in range(self.ports):
                ip.write_addr(f"W{p}_ADDR", weights)
        ip.start()
        ip.wait(self.timeout_s, what)

    def _token_id(self, token: int) -> int:
        if isinstance(token, (bool, np.bool_)) or not isinstance(token, (int, np.integer)):
            raise ConfigError(f"token id {token!r} is not an integer")
        t = int(token)
        if not 0 <= t < self.vocab:
            raise ConfigError(f"token id {t} outside the model's vocabulary 0..{self.vocab - 1}")
        return t

    def _whole(self, op: int, token: int):
        """One whole-token call (OP_BODY or OP_TOKEN): per token only TOKEN (and OP when it changes)."""
        t = self._token_id(token)
        if not self._arena_regs:  # a per-op call (notebook, tests) moved W*/H_ADDR: back to the arena
            self._point_at_arena()
        self._run(op, f"op {OP_NAMES[op]} (token #{self.tokens}, id {t}; {self.n_layers} layers)", token=t)
        self.tokens += 1

    def _body(self, token: int):
        """Per-op schedule of one token without the head: EMBED, then one LAYER call per layer."""
        t = self._token_id(token)
        n = self.tokens
        self._run(OP_EMBED, f"op EMBED (token #{n}, id {t})", token=t)
        for li in range(self.n_layers):
            self._run(OP_LAYER, f"op LAYER (layer {li} of {self.n_layers}, token #{n})",
                      weights=self.blob_addr[li], h=self.h_addr[li])
        self.tokens += 1

    def _head(self) -> np.ndarray:
        """Per-op HEAD call on the current x: logits [V]."""
        self._run(OP_HEAD, f"op HEAD (token #{self.tokens - 1})", weights=self.head_addr)
        return self._logits()

    def _logits(self) -> np.ndarray:
        self.out.invalidate()
        return np.array(self.out[:self.vocab], dtype=np.float32)

    # ------------------------------------------------------------------ per token
    def step(self, token: int) -> np.ndarray:
        """One decode token: logits float32 [V]. One OP_TOKEN call (per-op fallback: EMBED, LAYERs, HEAD)."""
        if self.mode == "token":
            self._whole(OP_TOKEN, token)
            return self._logits()
        self._body(token)
        return self._head()

    def prefill(self, ids: Sequence[int]) -> np.ndarray:
        """Prompt tokens one by one, logits [V] of the last: OP_BODY for all but the last, OP_TOKEN for it
        (per-op fallback: EMBED + LAYERs each, HEAD after the last)."""
        ids = [self._token_id(i) for i in ids]
        if not ids:
            raise ConfigError("empty prompt")
        if self.mode == "token":
            for t in ids[:-1]:
                self._whole(OP_BODY, t)
            return self.step(ids[-1])
        for t in ids:
            self._body(t)
        return self._head()

    def reset(self) -> None:
        """Zero the recurrent state (between prompts)."""
        self.h[:] = 0
        self.h.flush()
        self.tokens = 0

    def state(self) -> np.ndarray:
        """The recurrent state [L, d] (a copy, after invalidating)."""
        self.h.invalidate()
        return np.array(self.h[:, :self.d])

    def close(self) -> None:
        for b in self.buffers:
            try:
                b.freebuffer()
            except Exception:
                pass
        self.buffers = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def default_bitfile(board: str) -> Optional[str]:
    """overlay/<board>/mmfree.bit of a source tree, or the package's overlays/<board>/mmfree.bit."""
    here = os.path.dirname(os.path.abspath(__file__))
    for p in (os.path.join(here, "overlays", board, "mmfree.bit"),
              os.path.join(os.path.dirname(os.path.dirname(here)), "overlay", board, "mmfree.bit")):
        if os.path.exists(p):
            return p
    return None


def open_board(model, bitfile: Optional[str] = None, board: Optional[str] = None, **kw) -> Accelerator:
    """Load the overlay with pynq (this driver bound by VLNV) and the model onto it."""
    board = board or detect_board() or "kv260"
    if not bitfile:
        try:
            from . import boards as _b
            bitfile = _b.overlay_path(board)
        except (ImportError, AttributeError):
            bitfile = default_bitfile(board)
    if not bitfile:
        raise DeviceError(f"no overlay bitstream for board {board!r}: pass --overlay PATH/mmfree.bit")
    try:
        import pynq
    except ImportError:
        raise DeviceError("the pynq backend needs the pynq package (on the board); use --backend emu") from None
    if not issubclass(MMFreeKernel, pynq.DefaultIP):
        raise DeviceError("mmfree.driver was imported before pynq off-board; set MMFREE_PYNQ=1 to bind the driver")
    ol = pynq.Overlay(bitfile)
    acc = Accelerator(ol, model, board=board, **kw)
    print(f"mmfree: {bitfile}: {acc.describe()}", file=sys.stderr)
    return acc


__all__ = ["VLNV", "REGISTERS", "MMFreeKernel", "Accelerator", "open_board", "find_kernel", "check_fits",
           "check_identity", "check_clock", "read_pl_clock", "StaleOverlay", "cma_message",
           "buffer_plan", "layer_layout", "head_layout", "layer_stride", "arena_layout", "board_params",
           "BusError"]
