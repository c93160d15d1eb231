"""Emulated overlay: the surface of a pynq Overlay that mmfree.driver uses, over the C-simulated kernel.

    from mmfree import emu
    ol = emu.Overlay(board="kv260")           # build/csim/kv260/libmmfree_csim.so (`make csim`)
    ol.ip_dict["mmfree_kernel_0"]["type"]     # "xilinx.com:hls:mmfree_kernel:1.0"
    ip = ol.mmfree_kernel_0                   # mmfree.driver.MMFreeKernel over an emulated register file
    buf = ol.allocate((1024,), np.float32)    # numpy-backed, .physical_address/.device_address, flush/invalidate
    ip.write(0x00, 1)                         # AP_START: runs the HLS C++ (python/mmfree/csim.py) on the buffers

Writing AP_START to CTRL runs the kernel synchronously through the C-simulation library on the
memory the address registers point to, then sets ap_done/ap_idle/ap_ready. An address outside every
live buffer raises BusError naming the register and the address (a DECERR on the board). Buffer
addresses are fake but stable: page aligned, from a fixed base, a guard page between buffers.
``hang_after=N`` makes the (N+1)-th start hang forever (ap_idle never set), for timeout tests;
``max_block_bytes=N`` refuses any single buffer larger than N bytes, like a fragmented CMA (the
driver then falls back from the one-buffer weights arena to per-layer buffers and per-op calls).
The identity block (MMFREE_REG_ID_*) is what the C-simulated kernel writes on every call, from the same
header as the hardware; like the hardware it reads 0 until the first call (the driver's OP_IDENT).
``fclk_mhz`` is the PL clock the emulated image "set" (pynq.Clocks.fclk0_mhz on a board; default: the
build's target), ``kernel_identity="stale"`` emulates an overlay built before register map version 4
(no identity registers: they read 0) and a dict overrides identity words (a foreign build), for tests.
The kernels are never re-implemented here.
"""

import bisect
import os
import time
from typing import Dict, List, Optional

import numpy as np

from . import driver as drv
from .errors import BusError, DeviceError

_ID_OFFSETS = frozenset(v for k, v in drv.REGISTERS.items() if k.startswith("ID_"))
BASE_ADDR = 0x7000_0000     # first buffer; stays below 4 GiB for small models, like CMA on the boards
IP_BASE = 0xA000_0000       # where the kernel's s_axilite registers would be (M_AXI_HPM0_FPD)


class EmuBuffer(np.ndarray):
    """A numpy array with a fake physical address, pynq.buffer.PynqBuffer's surface."""

    def __array_finalize__(self, obj):
        if obj is None:
            return
        self._mem = getattr(obj, "_mem", None)
        self._root = getattr(obj, "_root", None)
        base_addr = getattr(obj, "physical_address", None)
        if base_addr is not None and isinstance(obj, np.ndarray):
            delta = self.__array_interface__["data"][0] - obj.__array_interface__["data"][0]
            self.physical_address = base_addr + delta
        else:
            self.physical_address = None

    @property
    def device_address(self):
        return self.physical_address

    @property
    def virtual_address(self):
        return self.__array_interface__["data"][0]

    cacheable = True
    coherent = False

    def flush(self):
        if self._mem is not None:
            self._mem.flushes += 1
            self._mem.flushed.append(self.physical_address)

    def invalidate(self):
        if self._mem is not None:
            self._mem.invalidates += 1
            self._mem.invalidated.append(self.physical_address)

    sync_to_device = flush
    sync_from_device = invalidate

    def freebuffer(self):
        if self._mem is not None and self._root is not None:
            self._mem.free(self._root)

    def close(self):  # deprecated no-op in pynq
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.freebuffer()


class _Block:
    __slots__ = ("addr", "nbytes", "span", "store")

    def __init__(self, addr, nbytes, span, store):
        self.addr, self.nbytes, self.span, self.store = addr, nbytes, span, store


class EmuMemory:
    """Contiguous-memory allocator with fake physical addresses and a CMA budget."""

    def __init__(self, cma_bytes: int, base: int = BASE_ADDR, max_block_bytes: Optional[int] = None):
        self.cma_bytes, self.base = int(cma_bytes), base
        self.max_block_bytes = max_block_bytes  # largest contiguous block (None: no fragmentation)
        self._next = base
        self._starts: List[int] = []
        self._blocks: List[_Block] = []
        self.used = 0
        self.flushes = self.invalidates = 0
        self.flushed: List[int] = []
        self.invalidated: List[int] = []

    def alloc(self, shape, dtype=np.uint32) -> EmuBuffer:
        dt = np.dtype(dtype)
        n = int(np.prod(shape)) * dt.itemsize
        span = drv.cma_footprint(n)
        if self.max_block_bytes is not None and span > self.max_block_bytes:
            raise DeviceError(f"emulated CMA fragmented: no contiguous block of {n} bytes (largest free block "
                              f"{self.max_block_bytes} bytes)")
        if self.used + span > self.cma_bytes:
            raise DeviceError(f"emulated CMA exhausted: {n} bytes requested, {self.cma_bytes - self.used} of "
                              f"{self.cma_bytes} free")
        store = np.zeros(span, np.uint8)
        arr = store[:n].view(dt).reshape(shape).view(EmuBuffer)
        arr._mem, arr._root, arr.physical_address = self, None, self._next
        block = _Block(self._next, n, span, store)
        arr._root = block
        i = bisect.bisect(self._starts, block.addr)
        self._starts.insert(i, block.addr)
        self._blocks.insert(i, block)
        self._next += span + drv.PAGE  # guard page: an overrun never lands in the next buffer
        self.used += span
        return arr

    def free(self, block: _Block) -> None:
        i = bisect.bisect_left(self._starts, block.addr)
        if i < len(self._starts) and self._blocks[i] is block:
            del self._starts[i]
            del self._blocks[i]
            self.used -= block.span

    def resolve(self, addr: int, nbytes: int) -> Optional[int]:
        """Host address of [addr, addr + nbytes) if it lies inside one live buffer, else None."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i < 0:
            return None
        b = self._blocks[i]
        if addr + nbytes > b.addr + b.nbytes:
            return None
        return b.store.ctypes.data + (addr - b.addr)

    def buffers(self) -> int:
        return len(self._blocks)


class EmuRegisters:
    """The kernel's s_axilite register file (pynq.MMIO's read/write surface)."""

    def __init__(self, lib, memory: EmuMemory, hang_after: Optional[int] = None, kernel_identity=None):
        self.lib, self.memory, self.hang_after = lib, memory, hang_after
        self.kernel_identity = kernel_identity  # None, "stale" or {register name: value}
        self.idents = 0                    # OP_IDENT calls (not counted in starts/ops/hang_after)
        from . import csim
        span = max(drv.REG_SPAN, csim.REG_SPAN)  # the library reads a whole image of its own span
        self.regs = np.zeros(span // 4, np.uint32)
        self.regs[0] = drv.AP_IDLE
        self.writes: List[tuple] = []      # (offset, value) of every write, for tests
        self.record = False
        self.n_reads = self.n_writes = 0   # MMIO accesses, as the driver makes them
        self.starts = 0
        self.ops: Dict[int, int] = {}
        self.kernel_seconds = 0.0          # time inside the C-simulated kernel
        self.stub = False                  # True: AP_START completes at once without running the kernel

    def _check(self, offset: int):
        if offset % 4 or not 0 <= offset < drv.REG_SPAN:
            raise DeviceError(f"emulated mmfree_kernel: register offset {offset:#x} outside 0..{drv.REG_SPAN - 4:#x} "
                              "or not word aligned")

    def read(self, offset: int = 0, length: int = 4, word_order: str = "little") -> int:
        self._check(offset)
        self.n_reads += 1
        v = int(self.regs[offset // 4])
        if length == 8:
            v |= int(self.regs[offset // 4 + 1]) << 32
        if offset == 0:  # ap_done and ap_ready clear on read (ap_ctrl_hs)
            self.regs[0] = v & ~(drv.AP_DONE | drv.AP_READY) & 0xFFFFFFFF
        elif offset - 4 in _ID_OFFSETS:  # an identity word's ap_vld: clear on read, like any output scalar
            self.regs[offset // 4] = 0
        return v

    def write(self, offset: int, value) -> None:
        self._check(offset)
        v = int(value)
        if not 0 <= v <= 0xFFFFFFFF:
            # pynq.MMIO would silently keep the low 32 bits: make that driver bug loud here
            raise DeviceError(f"emulated mmfree_kernel: write of {v:#x} to {offset:#x} does not fit 32 bits "
                              "(64-bit addresses are two writes)")
        self.n_writes += 1
        if self.record:
            self.writes.append((offset, v))
        if offset == drv.REGISTERS["CTRL"]:
            self.regs[0] = (int(self.regs[0]) & ~0x80) | (v & 0x80)
            if v & drv.AP_START:
                self._start()
        elif offset == drv.REGISTERS["ISR"]:
            self.regs[offset // 4] = int(self.regs[offset // 4]) & ~v & 0xFFFFFFFF
        else:
            self.regs[offset // 4] = v

    def _identity_override(self):
        ki = self.kernel_identity
        if ki is None:
            return
        names = [k for k in drv.REGISTERS if k.startswith("ID_")]
        if ki == "stale":  # a version-3 kernel has no such registers: reads return 0
            for k in names:
                self.regs[drv.REGISTERS[k] // 4] = 0
                self.regs[drv.REGISTERS[k] // 4 + 1] = 0
        else:
            for k, v in dict(ki).items():
                self.regs[drv.REGISTERS[k] // 4] = int(v) & 0xFFFFFFFF

    def _start(self):
        if not self.regs[0] & drv.AP_IDLE:
            return  # busy (hung): a new start is ignored, as on the hardware
        op = int(self.regs[drv.REGISTERS["OP"] // 4])
        if op == drv.OP_IDENT:  # identity call: the kernel writes only its identity block
            self.idents += 1
            self.lib.call(self.regs, self.memory.resolve)  # touches no memory, cheap: also in stub mode
            self._identity_override()
            self.regs[0] = drv.AP_IDLE | drv.AP_DONE | drv.AP_READY | (int(self.regs[0]) & 0x80)
            return
        if self.hang_after is not None and self.starts >= self.hang_after:
            self.regs[0] = drv.AP_START  # start never taken, never idle again
            self.starts += 1
            return
        self.starts += 1
        self.ops[op] = self.ops.get(op, 0) + 1
        if not self.stub:
            t0 = time.perf_counter()
            try:
                self.lib.call(self.regs, self.memory.resolve)
            except Exception as e:  # csim.CsimError: an unresolvable or misaligned address register
                self.regs[0] = drv.AP_IDLE
                raise BusError(f"emulated bus error during op {drv.OP_NAMES.get(op, op)}: {e}") from None
            finally:
                self.kernel_seconds += time.perf_counter() - t0
            self._identity_override()
        self.regs[0] = drv.AP_IDLE | drv.AP_DONE | drv.AP_READY | (int(self.regs[0]) & 0x80)
        if self.regs[drv.REGISTERS["IER"] // 4] & 1:
            self.regs[drv.REGISTERS["ISR"] // 4] |= 1


class Overlay:
    """An emulated mmfree overlay: ``ip_dict``, the kernel IP as ``mmfree_kernel_0``, ``allocate``."""

    def __init__(self, board: str = "kv260", lib=None, cma_bytes: Optional[int] = None,
                 hang_after: Optional[int] = None, max_layers: Optional[int] = None,
                 max_block_bytes: Optional[int] = None, fclk_mhz: Optional[float] = None,
                 kernel_identity=None, via_pynq: Optional[bool] = None):
        from . import csim

        params = drv.board_params(board)
        self.board = params["name"]
        if lib is None:
            try:
                lib = csim.load(self.board)
            except csim.CsimError as e:
                raise DeviceError(str(e)) from None
        self.lib = lib
        c = lib.config
        if c.get("regs_version") not in (None, drv.REGS_VERSION):
            raise DeviceError(f"the C-simulation library has register map version {c['regs_version']}, mmfree.driver "
                              f"speaks version {drv.REGS_VERSION}: update the driver or rebuild with `make csim`")
        self.cma_bytes = int(cma_bytes or params["cma_bytes"])
        self.mmfree_limits = {"max_d": c["max_d"], "max_inter": c["max_inter"], "max_vocab": c["max_vocab"],
                              "max_layers": int(max_layers or c.get("max_layers") or params["max_layers"]),
                              "weight_ports": c["ports"]}
        self.memory = EmuMemory(self.cma_bytes, max_block_bytes=max_block_bytes)
        self.registers = EmuRegisters(lib, self.memory, hang_after, kernel_identity)
        self.fclk_mhz = float(fclk_mhz) if fclk_mhz else float(params["clock_mhz"])  # pynq.Clocks.fclk0_mhz
        desc = {
            "fullpath": "mmfree_kernel_0", "type": drv.VLNV, "bdtype": None, "state": None,
            "phys_addr": IP_BASE, "addr_range": 0x10000, "mem_id": "s_axi_control",
            "parameters": {"C_S_AXI_CONTROL_ADDR_WIDTH": "8", "C_M_AXI_GMEM_W0_DATA_WIDTH": str(c["port_bits"])},
            "registers": {k: {"address_offset": v, "size": 32} for k, v in drv.REGISTERS.items()},
            "interrupts": {}, "gpio": {}, "driver": drv.MMFreeKernel, "device": None,
            "mmio": self.registers,
        }
        self.ip_dict = {"mmfree_kernel_0": desc}
        self.mem_dict = {"PSDDR": {"base_address": BASE_ADDR, "size": self.cma_bytes, "used": 1}}
        self.mmfree_kernel_0 = drv.MMFreeKernel(desc)
        self._closed = False
        if via_pynq is None:
            via_pynq = os.environ.get("MMFREE_EMU_VIA_PYNQ") == "1"
        self.device = None
        if via_pynq:  # the same kernel and memory behind pynq's DefaultIP/MMIO/allocate (mmfree.emu_pynq)
            from . import emu_pynq
            emu_pynq.attach(self)

    def allocate(self, shape, dtype=np.uint32, target=None, **kwargs) -> EmuBuffer:
        if self._closed:
            raise DeviceError("emulated overlay is closed")
        if isinstance(shape, int):
            shape = (shape,)
        return self.memory.alloc(tuple(shape), dtype)

    def is_loaded(self) -> bool:
        return not self._closed

    def download(self):
        return None

    def free(self):
        self._closed = True

    close = free

    # ------------------------------------------------------------------ for tests and measurements
    @property
    def flushes(self) -> int:
        return self.memory.flushes

    @property
    def invalidates(self) -> int:
        return self.memory.invalidates
