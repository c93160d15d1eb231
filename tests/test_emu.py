"""The emulated overlay (mmfree.emu): tokens and logits equal to the golden model's, buffers with
stable fake addresses, bus errors on bad addresses, a hung kernel, register semantics."""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

BOARD = "kv260"


@pytest.fixture(scope="session")
def csim_lib():
    """`make csim` (a no-op when up to date); fails with the build error, never skips."""
    r = subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "hls"), "csim", f"BOARD={BOARD}",
                        f"PY={sys.executable}"], capture_output=True, text=True)
    if r.returncode:
        pytest.fail("make csim failed:\n" + r.stdout[-4000:] + r.stderr[-4000:])
    from mmfree import csim
    return csim.load(BOARD)


def _overlay(lib, **kw):
    from mmfree import emu
    return emu.Overlay(board=BOARD, lib=lib, **kw)


CASES = [("tiny", "2bit"), ("tiny", "base3"), ("odd", "2bit"), ("odd", "base3"), ("wide", "2bit"),
         ("wide", "base3")]


@pytest.mark.parametrize("shape,packing", CASES)
def test_emu_tokens_equal_golden(csim_lib, packed_cache, shape, packing):
    from mmfree.backends import AcceleratorBackend, GoldenBackend
    from mmfree.driver import Accelerator
    from mmfree.generate import Sampling, generate

    _, path = packed_cache(shape, packing)
    ol = _overlay(csim_lib)
    emu_b = AcceleratorBackend("emu", Accelerator(ol, path), ol)
    gold_b = GoldenBackend(path)
    prompt = [1, 7, 3, 42 % gold_b.vocab_size]
    for s in (Sampling(greedy=True), Sampling(temperature=0.9, top_k=20, top_p=0.95, seed=11),
              Sampling(temperature=1.3, seed=5)):
        a = generate(emu_b, prompt, 6, s, eos_token_id=None)
        b = generate(gold_b, prompt, 6, s, eos_token_id=None)
        assert a.tokens == b.tokens, (s, a.tokens, b.tokens)
    emu_b.close()


@pytest.mark.parametrize("packing", ["2bit", "base3"])
def test_emu_logits_bit_exact_and_state(csim_lib, packed_cache, packing):
    from mmfree.driver import Accelerator
    from mmfree.golden import GoldenModel

    _, path = packed_cache("odd", packing)
    acc = Accelerator(_overlay(csim_lib), path)
    g = GoldenModel(path)
    ids = [3, 1, 4, 1, 5]
    assert np.array_equal(acc.prefill(ids), g.forward(ids)[-1])
    for t in (9, 2, 6):
        assert np.array_equal(acc.step(t), g.step(t))
    assert np.array_equal(acc.state(), g.h)
    # a reset between prompts: the same prompt gives the same logits again
    acc.reset()
    g.reset()
    assert np.array_equal(acc.prefill(ids[:2]), g.forward(ids[:2])[-1])
    acc.close()


def test_buffers_addresses(csim_lib):
    ol = _overlay(csim_lib)
    bufs = [ol.allocate((n,), np.uint8) for n in (1, 5000, 8192, 100000)]
    bufs.append(ol.allocate((7, 9), np.float32))
    spans = []
    for b in bufs:
        assert b.physical_address % 4096 == 0
        assert b.device_address == b.physical_address
        spans.append((b.physical_address, b.physical_address + b.nbytes))
    spans.sort()
    for (a0, a1), (b0, b1) in zip(spans, spans[1:]):
        assert a1 <= b0, "buffers overlap"
    # stable: a second overlay hands out the same addresses in the same order
    ol2 = _overlay(csim_lib)
    again = [ol2.allocate((n,), np.uint8) for n in (1, 5000, 8192, 100000)]
    assert [b.physical_address for b in again] == [b.physical_address for b in bufs[:4]]
    # slices keep their device address, flush/invalidate are counted
    f = bufs[4]
    assert f[2:].physical_address == f.physical_address + 2 * 9 * 4
    f.flush()
    f[1].invalidate()
    assert (ol.flushes, ol.invalidates) == (1, 1)
    # resolve: inside, straddling the end, after free
    m = ol.memory
    b = bufs[1]
    assert m.resolve(b.physical_address, 5000) == b.ctypes.data
    assert m.resolve(b.physical_address + 16, 5000) is None
    b.freebuffer()
    assert m.resolve(b.physical_address, 16) is None
    assert ol.is_loaded()
    ol.close()


def test_emu_cma_exhausted(csim_lib):
    from mmfree.errors import DeviceError

    ol = _overlay(csim_lib, cma_bytes=64 * 1024)
    ol.allocate((40000,), np.uint8)
    with pytest.raises(DeviceError, match="CMA"):
        ol.allocate((40000,), np.uint8)


def test_registers(csim_lib):
    from mmfree import driver as drv
    from mmfree.errors import DeviceError

    ol = _overlay(csim_lib)
    ip = ol.mmfree_kernel_0
    assert isinstance(ip, drv.MMFreeKernel)
    assert ol.ip_dict["mmfree_kernel_0"]["type"] == drv.VLNV
    assert ip.read(0) & drv.AP_IDLE
    ip.write(drv.REGISTERS["D"], 123)
    assert ip.read(drv.REGISTERS["D"]) == 123
    with pytest.raises(DeviceError, match="32 bits"):
        ip.write(drv.REGISTERS["X_ADDR"], 1 << 33)
    with pytest.raises(DeviceError, match="offset"):
        ip.read(0x2)
    with pytest.raises(DeviceError, match="offset"):
        ip.write(drv.REG_SPAN, 0)


def test_out_of_range_address_is_bus_error(csim_lib, packed_cache):
    from mmfree import driver as drv
    from mmfree.errors import BusError

    _, path = packed_cache("tiny", "2bit")
    ol = _overlay(csim_lib)
    acc = drv.Accelerator(ol, path)
    acc.step(1)
    ip = acc.ip
    # x points at an unmapped page between buffers
    bad = acc.x.physical_address + 0x100000000
    ip.write_addr("X_ADDR", bad)
    with pytest.raises(BusError) as e:
        acc.step(1)
    msg = str(e.value)
    assert "X_ADDR" in msg and f"{bad:x}" in msg and "EMBED" in msg
    # a weight blob pointer at the end of a buffer (the blob would run past it)
    ip.write_addr("X_ADDR", acc.x.physical_address)
    acc.blob_addr[0] = acc.blobs[0].physical_address + 4096
    with pytest.raises(BusError, match="W0_ADDR"):
        acc.step(1)
    # a freed buffer is not memory any more
    acc.blob_addr[0] = acc.blobs[0].physical_address
    acc.head.freebuffer()
    with pytest.raises(BusError, match="W0_ADDR.*HEAD|HEAD.*W0_ADDR"):
        acc.step(1)


def test_hung_kernel_times_out(csim_lib, packed_cache):
    from mmfree.driver import Accelerator
    from mmfree.errors import DeviceError, KernelTimeout

    _, path = packed_cache("wide", "base3")          # 4 layers: EMBED, LAYER x4, HEAD per token
    ol = _overlay(csim_lib, hang_after=3)             # the 4th start hangs: LAYER 2 of token 0
    acc = Accelerator(ol, path, timeout_s=0.05)
    with pytest.raises(KernelTimeout) as e:
        acc.step(5)
    msg = str(e.value)
    assert "LAYER" in msg and "layer 2 of 4" in msg and "0.05" in msg and "hung" in msg
    # the kernel stays busy: a new Accelerator on this overlay refuses to start
    with pytest.raises(DeviceError, match="not idle"):
        Accelerator(ol, path)


def test_hung_on_first_call(csim_lib, packed_cache):
    from mmfree.driver import Accelerator
    from mmfree.errors import KernelTimeout

    _, path = packed_cache("tiny", "base3")
    acc = Accelerator(_overlay(csim_lib, hang_after=0), path, timeout_s=0.02)
    with pytest.raises(KernelTimeout, match="EMBED"):
        acc.prefill([1, 2])


def test_emu_overlay_without_library():
    from mmfree import emu
    from mmfree.errors import DeviceError

    with pytest.raises(DeviceError, match="make csim"):
        old = os.environ.get("MMFREE_CSIM_LIB")
        os.environ["MMFREE_CSIM_LIB"] = "/nonexistent/libmmfree_csim.so"
        try:
            emu.Overlay(board=BOARD)
        finally:
            if old is None:
                del os.environ["MMFREE_CSIM_LIB"]
            else:
                os.environ["MMFREE_CSIM_LIB"] = old


def test_bench_script_runs(csim_lib, packed_cache):
    """scripts/bench_emu.py on a tiny model (numbers are not asserted: speed is measured, not tested)."""
    import importlib.util

    _, path = packed_cache("tiny", "2bit")
    spec = importlib.util.spec_from_file_location("bench_emu", os.path.join(ROOT, "scripts", "bench_emu.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    r = mod.bench(path, 2)
    assert r["kernel_calls_per_token"] == 3 and r["decode_tokens_per_s"] > 0
    assert r["mmio_reads_per_token"] >= 3 and r["mmio_writes_per_token"] >= 3
