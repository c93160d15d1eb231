"""The emulated overlay behind the real ``pynq`` package: a ``pynq.Device`` that serves register reads and
writes and contiguous buffers from the emulator (the C-simulated kernel, ``mmfree.emu``).

With it the driver's tests run through pynq's own code: ``pynq.DefaultIP.__init__`` builds a
``pynq.MMIO`` over this device (the ``REGISTER_RW`` path: every ``mmio.read``/``mmio.write`` becomes
``read_registers``/``write_registers`` here), ``pynq.allocate(..., target=device)`` goes through
``Device.allocate`` to this memory and returns a ``pynq.buffer.PynqBuffer`` whose ``flush``/``invalidate``
call this device, and ``freebuffer`` returns the block through PynqBuffer's pooled-pointer path.
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


class EmuPynqDevice(pynq.Device):
    """A pynq Device whose registers and memory are the emulator's (no ``_probe_``: never auto-detected)."""

    def __init__(self, overlay):
        super().__init__("mmfree-emulator")
        self.capabilities = {"REGISTER_RW": True, "MEMORY_MAPPED": False, "CALLABLE": False}
        self.name = "mmfree-emulator"
        self.overlay = overlay
        self.registers = overlay.registers
        self.memory = overlay.memory
        self.ip_base = None
        self.default_memory = _Memory(self, overlay.memory)

    # ------------------------------------------------------------------ REGISTER_RW (pynq.MMIO)
    def _offset(self, address):
        base = self.ip_base
        if base is None or not base <= address < base + drv.REG_SPAN:
            raise DeviceError(f"emulated pynq device: no register at {address:#x} (kernel at {base:#x})")
        return address - base

    def read_registers(self, address, length):
        off = self._offset(address)
        words = [self.registers.read(off + 4 * i) for i in range(max(1, length // 4))]
        return struct.pack("<%dI" % len(words), *words)[:length]

    def write_registers(self, address, data):
        off = self._offset(address)
        if len(data) % 4:
            raise DeviceError("emulated pynq device: register writes are whole 32-bit words")
        for i, w in enumerate(struct.unpack("<%dI" % (len(data) // 4), data)):
            self.registers.write(off + 4 * i, w)

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
    dev = EmuPynqDevice(overlay)
    desc = dict(overlay.ip_dict["mmfree_kernel_0"])
    desc.pop("mmio", None)
    desc["device"] = dev
    desc["interrupts"], desc["gpio"] = {}, {}
    dev.ip_base = int(desc["phys_addr"])
    overlay.ip_dict = {"mmfree_kernel_0": desc}
    overlay.device = dev
    overlay.mmfree_kernel_0 = drv.MMFreeKernel(desc)    # pynq.DefaultIP.__init__ -> pynq.MMIO(device=dev)
    pynq.Device.active_device = dev

    def allocate(shape, dtype=np.uint32, target=None, **kwargs):
        if overlay._closed:
            raise DeviceError("emulated overlay is closed")
        return pynq.allocate(shape, dtype, target=dev, **kwargs)

    overlay.allocate = allocate
    return dev
