"""The emulated overlay (mmfree.emu): tokens and logits equal to the golden model's, buffers with
stable fake addresses, bus errors on bad addresses, a hung kernel, register semantics."""

import os

import numpy as np
import pytest

from conftest import ROOT

BOARD = "kv260"



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


@pytest.mark.parametrize("shape,packing", CASES)
def test_emu_logits_bit_exact_and_state(csim_lib, packed_cache, shape, packing):
    """The TOKEN path (BODY for the prompt, TOKEN for its last token and every decode token) == golden,
    bit for bit, logits and state, and again after a reset."""
    from mmfree import driver as drv
    from mmfree.driver import Accelerator
    from mmfree.golden import GoldenModel

    _, path = packed_cache(shape, packing)
    ol = _overlay(csim_lib)
    acc = Accelerator(ol, path)
    assert acc.mode == "token"
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
    assert np.array_equal(acc.step(7), g.step(7))
    assert np.array_equal(acc.state(), g.h)
    assert set(ol.registers.ops) == {drv.OP_BODY, drv.OP_TOKEN}   # no per-op call at all
    acc.close()


@pytest.mark.parametrize("packing", ["2bit", "base3"])
def test_arena_allocation_failure_falls_back_to_per_op(csim_lib, packed_cache, packing):
    """A fragmented CMA (no block as large as the arena): the driver says so once, loads one buffer per
    layer and runs EMBED, LAYER x L, HEAD per token, still equal to golden bit for bit."""
    from mmfree import driver as drv
    from mmfree.golden import GoldenModel

    _, path = packed_cache("odd", packing)
    from mmfree import packed as pk
    c = pk.load(path).config
    lay = drv.arena_layout(c.num_hidden_layers, c.hidden_size, c.intermediate_size, c.vocab_size, packing)
    biggest_other = max(drv.layer_layout(c.hidden_size, c.intermediate_size, packing)["bytes"],
                        drv.head_layout(c.hidden_size, c.vocab_size, packing)["bytes"], 2 * c.vocab_size * c.hidden_size)
    ol = _overlay(csim_lib, max_block_bytes=drv.cma_footprint(biggest_other))
    assert drv.cma_footprint(lay["bytes"]) > ol.memory.max_block_bytes
    with pytest.warns(RuntimeWarning, match="weights arena") as rec:
        acc = drv.Accelerator(ol, path)
    assert len([w for w in rec if "arena" in str(w.message)]) == 1
    assert acc.mode == "per-op" and acc.weights is None and "fragmented" in acc.fallback_reason
    assert ol.memory.buffers() == c.num_hidden_layers + 5
    g = GoldenModel(path)
    ids = [3, 1, 4]
    assert np.array_equal(acc.prefill(ids), g.forward(ids)[-1])
    for t in (9, 2):
        assert np.array_equal(acc.step(t), g.step(t))
    acc.reset()
    g.reset()
    assert np.array_equal(acc.prefill(ids[:1]), g.forward(ids[:1])[-1])
    assert np.array_equal(acc.state(), g.h)
    assert set(ol.registers.ops) == {drv.OP_EMBED, drv.OP_LAYER, drv.OP_HEAD}
    acc.close()
    # an allocator that fails for any reason (pynq: RuntimeError from XRT) falls back the same way
    ol2 = _overlay(csim_lib)

    def alloc(shape, dtype, **kw):
        if tuple(shape) == (lay["bytes"],):
            raise RuntimeError("Failed to allocate Memory!")
        return ol2.allocate(shape, dtype)

    with pytest.warns(RuntimeWarning, match="RuntimeError: Failed to allocate"):
        acc = drv.Accelerator(ol2, path, allocate=alloc)
    assert acc.mode == "per-op"
    assert np.array_equal(acc.step(5), GoldenModel(path).step(5))


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
    if getattr(ol, "device", None) is not None:  # behind the real pynq (MMFREE_EMU_VIA_PYNQ=1): pynq.MMIO refuses first
        import struct
        with pytest.raises(struct.error):
            ip.write(drv.REGISTERS["X_ADDR"], 1 << 33)
        with pytest.raises(MemoryError, match="Unaligned"):
            ip.read(0x2)
        with pytest.raises(DeviceError, match="no register"):
            ip.write(drv.REG_SPAN, 0)
        return
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
    assert "X_ADDR" in msg and f"{bad:x}" in msg and "TOKEN" in msg
    ip.write_addr("X_ADDR", acc.x.physical_address)
    acc.step(1)
    acc.close()


@pytest.mark.parametrize("op", ["TOKEN", "BODY"])
def test_whole_token_short_buffers_are_bus_errors(csim_lib, packed_cache, op):
    """TOKEN/BODY resolve the arena and the state with the extents LAYERS implies: a weights buffer or a
    state buffer one word too short is a bus error naming the register."""
    from mmfree import driver as drv
    from mmfree.errors import BusError

    _, path = packed_cache("wide", "base3")
    ol = _overlay(csim_lib)
    acc = drv.Accelerator(ol, path)
    L, lay = acc.n_layers, acc.arena
    need = lay["bytes"] if op == "TOKEN" else (L - 1) * lay["stride"] + drv.layer_layout(acc.d, acc.inter, "base3")["bytes"]
    opc = getattr(drv, "OP_" + op)
    ip = acc.ip
    ip.write_reg("OP", opc)
    ip.write_reg("TOKEN", 2)
    short = ol.allocate((need - 16,), np.uint8)
    short[:] = acc.weights[:need - 16]
    for p in range(acc.ports):
        ip.write_addr(f"W{p}_ADDR", short.physical_address)
    with pytest.raises(BusError, match=f"{op}.*W0_ADDR"):
        ip.start()
    exact = ol.allocate((need,), np.uint8)                 # exactly the extent the op reads: fine
    exact[:] = acc.weights[:need]
    for p in range(acc.ports):
        ip.write_addr(f"W{p}_ADDR", exact.physical_address)
    ip.start()
    ip.wait(1.0, op)
    for p in range(acc.ports):
        ip.write_addr(f"W{p}_ADDR", acc.weights.physical_address)
    state = ol.allocate(((L - 1) * drv.pad4(acc.d) + drv.pad4(acc.d) - 4,), np.float32)   # one word short
    ip.write_addr("H_ADDR", state.physical_address)
    with pytest.raises(BusError, match=f"{op}.*H_ADDR"):
        ip.start()
    ip.write_addr("H_ADDR", acc.h.physical_address)
    ip.write_reg("LAYERS", 0)
    with pytest.raises(BusError, match="LAYERS"):
        ip.start()
    ip.write_reg("LAYERS", csim_lib.config["max_layers"] + 1)
    with pytest.raises(BusError, match="LAYERS"):
        ip.start()
    acc.close()


def test_per_op_out_of_range_address_is_bus_error(csim_lib, packed_cache):
    from mmfree import driver as drv
    from mmfree.errors import BusError

    _, path = packed_cache("tiny", "2bit")
    acc = drv.Accelerator(_overlay(csim_lib), path, arena=False)
    acc.step(1)
    # a weight blob pointer at the end of a buffer (the blob would run past it)
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

    _, path = packed_cache("wide", "base3")          # 4 layers
    ol = _overlay(csim_lib, hang_after=3)             # the 4th start hangs: prompt BODY, BODY, TOKEN, then decode
    acc = Accelerator(ol, path, timeout_s=0.05)
    acc.prefill([1, 2, 3])
    with pytest.raises(KernelTimeout) as e:
        acc.step(5)
    msg = str(e.value)
    assert "op TOKEN" in msg and "token #3" in msg and "id 5" in msg and "0.05" in msg and "hung" in msg
    # the kernel stays busy: a new Accelerator on this overlay refuses to start
    with pytest.raises(DeviceError, match="not idle"):
        Accelerator(ol, path)
    # the per-op schedule names the layer
    ol = _overlay(csim_lib, hang_after=3)             # EMBED, LAYER 0, LAYER 1, then LAYER 2 hangs
    acc = Accelerator(ol, path, timeout_s=0.05, arena=False)
    with pytest.raises(KernelTimeout) as e:
        acc.step(5)
    msg = str(e.value)
    assert "LAYER" in msg and "layer 2 of 4" in msg and "0.05" in msg and "hung" in msg


def test_hung_on_first_call(csim_lib, packed_cache):
    from mmfree.driver import Accelerator
    from mmfree.errors import KernelTimeout

    _, path = packed_cache("tiny", "base3")
    acc = Accelerator(_overlay(csim_lib, hang_after=0), path, timeout_s=0.02)
    with pytest.raises(KernelTimeout, match=r"op BODY \(token #0, id 1"):
        acc.prefill([1, 2])
    acc = Accelerator(_overlay(csim_lib, hang_after=0), path, timeout_s=0.02, arena=False)
    with pytest.raises(KernelTimeout, match="EMBED"):
        acc.prefill([1, 2])


def test_emu_refuses_library_of_another_register_map(csim_lib):
    from mmfree import emu
    from mmfree.errors import DeviceError

    class Old:
        config = dict(csim_lib.config, regs_version=2)

    with pytest.raises(DeviceError, match="version 2.*version 4"):
        emu.Overlay(board=BOARD, lib=Old())
    assert csim_lib.config["regs_version"] == 4


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
    assert r["kernel_calls_per_token"] == 1 and r["decode_tokens_per_s"] > 0
    assert 1 <= r["mmio_reads_per_token"] <= 2 and 1 <= r["mmio_writes_per_token"] <= 3
