"""The emulated overlay behind the real ``pynq`` package: a ``pynq.Device`` that serves register reads and
writes and contiguous buffers from the emulator (the C-simulated kernel, ``mmfree.emu``).

With it the driver's tests run through pynq's own code: ``pynq.DefaultIP.__init__`` builds a
``pynq.MMIO`` over this device (the ``REGISTER_RW`` path: every ``mmio.read``/``mmio.write`` becomes
``read_registers``/``write_registers`` here), ``pynq.allocate(..., target=device)`` goes through
``Device.allocate`` to this memory and returns a ``pynq.buffer.PynqBuffer`` whose ``flush``/``invalidate``
call this device, and ``freebuffer`` returns the block through PynqBuffer's pooled-pointer path. On
Zynq UltraScale+ boards the device also serves the PS clock registers pynq's ``Clocks`` reads (CRL_APB
IOPLL_CTRL and PL0_REF_CTRL, as the image would have programmed them for the emulated PL clock), so
``pynq.Clocks.fclk0_mhz`` runs pynq's own ``_ClocksUltrascale`` code.
What is ours: the memory behind the buffers and the register file (``mmfree.emu``), and the kernel (HLS
C++ through g++). Used by ``emu.Overlay(..., via_pynq=True)`` or ``MMFREE_EMU_VIA_PYNQ=1``; needs pynq
installed (any host: pynq 3.0.1 and 4.0.0 install on x86-64), never used on a board.
"""

import struct

import numpy as np
import pynq
from pynq.buffer import PynqBuffer

from . import driver as drv
from .errors import DeviceError


class _Memory:
    """``Device.default_memory``: allocate() -> PynqBuffer over an emulator block."""

    def __init__(self, device, memory):
        self.device, self.memory = device, memory

    def allocate(self, shape, dtype="u4", cacheable=True, **kwargs):
        if isinstance(shape, int):
            shape = (shape,)
        emu_buf = self.memory.alloc(tuple(shape), dtype)
        block = emu_buf._root
        buf = PynqBuffer(shape=tuple(shape), dtype=np.dtype(dtype), buffer=emu_buf.data, device=self.device,
                         device_address=emu_buf.physical_address, bo=block, coherent=not cacheable)
        # pynq's pooled-buffer release: freebuffer() hands `pointer` back to `return_to.return_pointer`
        # (then marks nothing: _Release sets `freed`, so a second freebuffer, e.g. from __del__, does not
        # take pynq's munmap + XRT path, which is for XRT buffers only)
        buf.memory = self
        buf.pointer = block
        buf.return_to = _Release(self.memory, buf)
        return buf


class _Release:
    def __init__(self, memory, buf):
        self.memory, self.buf = memory, buf

    def return_pointer(self, block):
        self.memory.free(block)
        self.buf.freed = True
        self.buf = None


CRL_APB, CRF_APB = 0xFF5E0000, 0xFD1A0000   # Zynq UltraScale+ clock blocks (pynq.ps._ClocksUltrascale)
PS_REF_MHZ = 33.333                          # PS reference clock of the K26 and ZCU104 presets


class _PsClockRegisters:
    """CRL_APB/CRF_APB words as a ZynqMP image leaves them: IOPLL at the board's PLL rate
    (FBDIV, DIV2), PL0 from the IOPLL divided down to the emulated PL clock (DIVISOR0 x DIVISOR1)."""

    def __init__(self, pll_mhz, fclk_mhz):
        fbdiv = int(round(2 * pll_mhz / PS_REF_MHZ))           # DIV2 = 1: VCO / 2
        n = max(1, int(round(pll_mhz / fclk_mhz)))
        div0, div1 = next((a, n // a) for a in range(min(n, 63), 0, -1) if n % a == 0 and n // a <= 63)
        self.words = {CRL_APB + 0x20: (fbdiv << 8) | (1 << 16),                      # IOPLL_CTRL
                      CRL_APB + 0xC0: (1 << 24) | (div1 << 16) | (div0 << 8) | 0}     # PL0_REF_CTRL: IOPLL

    def covers(self, address):
        return CRL_APB <= address < CRL_APB + 0x100 or CRF_APB <= address < CRF_APB + 0x100

    def read(self, address):
        return self.words.get(address, 0)

    def write(self, address, value):
        self.words[address] = value


class EmuPynqDevice(pynq.Device):
    """A pynq Device whose registers and memory are the emulator's (no ``_probe_``: never auto-detected)."""

    def __init__(self, overlay, ps_clocks=None):
        super().__init__("mmfree-emulator")
        self.capabilities = {"REGISTER_RW": True, "MEMORY_MAPPED": False, "CALLABLE": False}
        self.name = "mmfree-emulator"
        self.arch = "aarch64" if ps_clocks is not None else "unknown"   # pynq 4.0 picks Clocks by device.arch
        self.overlay = overlay
        self.registers = overlay.registers
        self.memory = overlay.memory
        self.ps_clocks = ps_clocks
        self.ip_base = None
        self.default_memory = _Memory(self, overlay.memory)

    # ------------------------------------------------------------------ REGISTER_RW (pynq.MMIO)
    def _word_io(self, address):
        """(read, write) of the 32-bit register at ``address``: the kernel's, or a PS clock register."""
        base = self.ip_base
        if base is not None and base <= address < base + drv.REG_SPAN:
            off = address - base
            return (lambda: self.registers.read(off)), (lambda v: self.registers.write(off, v))
        if self.ps_clocks is not None and self.ps_clocks.covers(address):
            return (lambda: self.ps_clocks.read(address)), (lambda v: self.ps_clocks.write(address, v))
        raise DeviceError(f"emulated pynq device: no register at {address:#x} (kernel at {base:#x})")

    def read_registers(self, address, length):
        words = [self._word_io(address + 4 * i)[0]() for i in range(max(1, length // 4))]
        return struct.pack("<%dI" % len(words), *words)[:length]

    def write_registers(self, address, data):
        if len(data) % 4:
            raise DeviceError("emulated pynq device: register writes are whole 32-bit words")
        for i, w in enumerate(struct.unpack("<%dI" % (len(data) // 4), data)):
            self._word_io(address + 4 * i)[1](w)

    # ------------------------------------------------------------------ PynqBuffer cache maintenance
    def flush(self, bo, offset, ptr, size):
        self.memory.flushes += 1
        self.memory.flushed.append(bo.addr + offset)

    def invalidate(self, bo, offset, ptr, size):
        self.memory.invalidates += 1
        self.memory.invalidated.append(bo.addr + offset)


def attach(overlay):
    """Re-plumb an ``emu.Overlay`` through pynq: its kernel IP becomes a pynq ``DefaultIP`` subclass over a
    pynq ``MMIO`` on an ``EmuPynqDevice``, and ``overlay.allocate`` goes through ``pynq.allocate``."""
    if not issubclass(drv.MMFreeKernel, pynq.DefaultIP):
        raise DeviceError("mmfree.driver was imported without pynq: set MMFREE_PYNQ=1 before importing mmfree")
    params = drv.board_params(overlay.board)
    ps_clocks = None
    if params["family"] == "zynq_ultrascale_plus":
        ps_clocks = _PsClockRegisters(float(params["pl_clock"]["pll_mhz"]), overlay.fclk_mhz)
    dev = EmuPynqDevice(overlay, ps_clocks)
    desc = dict(overlay.ip_dict["mmfree_kernel_0"])
    desc.pop("mmio", None)
    desc["device"] = dev
    desc["interrupts"], desc["gpio"] = {}, {}
    dev.ip_base = int(desc["phys_addr"])
    overlay.ip_dict = {"mmfree_kernel_0": desc}
    overlay.device = dev
    overlay.mmfree_kernel_0 = drv.MMFreeKernel(desc)    # pynq.DefaultIP.__init__ -> pynq.MMIO(device=dev)
    pynq.Device.active_device = dev
    if ps_clocks is not None:
        # the driver reads the PL clock through pynq.Clocks (its _ClocksUltrascale over this device)
        overlay.fclk_mhz = None
        import pynq.ps as ps
        if hasattr(ps.Clocks, "_real_instance"):
            del ps.Clocks._real_instance       # pynq caches its clock object per process: one per overlay here
        if hasattr(ps.Clocks, "device"):
            ps.Clocks.device = dev             # pynq >= 3.1
        else:
            ps.CPU_ARCH = "aarch64"            # pynq 3.0.1 picks the implementation by the host CPU

    def allocate(shape, dtype=np.uint32, target=None, **kwargs):
        if overlay._closed:
            raise DeviceError("emulated overlay is closed")
        return pynq.allocate(shape, dtype, target=dev, **kwargs)

    overlay.allocate = allocate
    return dev
