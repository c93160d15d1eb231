"""Property-based fuzzing of the packed-model loader and the converter (issue 12).

Every input is a valid tiny file or checkpoint plus mutations drawn by hypothesis. The only
allowed outcomes: success, or ``mmfree.errors.MMFreeError``. Anything else fails the test:

- crash: any other exception;
- hang: an input still running after HANG_S seconds (a watchdog, not a speed assertion);
- silent acceptance: the loader returned a model that differs from the original in any tensor
  byte or metadata value (the integrity hash and the strict reader must catch every change), or
  the converter succeeded on a checkpoint holding NaN/Inf, or wrote a file the loader refuses;
- leftover: a temporary file left in the output folder, or an existing output changed by a
  conversion that failed.

The budget is fixed (derandomized, ``max_examples`` per category) so the run is repeatable and
bounded. Set ``MMFREE_FUZZ_REPORT=path.json`` to write the per-category counts.
"""

import collections
import json
import os
import shutil
import signal
import struct
import tempfile

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mmfree import packed as pk  # noqa: E402
from mmfree.convert import convert  # noqa: E402
from mmfree.errors import MMFreeError  # noqa: E402

from tinymodel import read_header, write_checkpoint, write_raw  # noqa: E402

HANG_S = 60
LOADER_EXAMPLES = int(os.environ.get("MMFREE_FUZZ_LOADER", "400"))
CONVERT_EXAMPLES = int(os.environ.get("MMFREE_FUZZ_CONVERT", "240"))
SETTINGS = dict(deadline=None, database=None, derandomize=True, print_blob=True,
                suppress_health_check=list(HealthCheck))

COUNTS = collections.defaultdict(collections.Counter)


class Hang(BaseException):
    pass


def _alarm(signum, frame):
    raise Hang()


def outcome(category, fn):
    """Run fn under the watchdog; return "ok" or "error"; fail on anything else."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_S)
    try:
        result = fn()
        cls = "ok"
    except MMFreeError:
        result, cls = None, "error"
    except Hang:
        COUNTS[category]["hang"] += 1
        pytest.fail(f"{category}: no result after {HANG_S} s")
    except Exception as e:  # noqa: BLE001 - the point: nothing else may escape
        COUNTS[category]["crash"] += 1
        raise AssertionError(f"{category}: {type(e).__name__} escaped: {e}") from e
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    COUNTS[category]["inputs"] += 1
    COUNTS[category][cls] += 1
    return cls, result


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    path = os.environ.get("MMFREE_FUZZ_REPORT")
    if path:
        zero = {"crash": 0, "hang": 0, "silent": 0, "leftover": 0}
        with open(path, "w", encoding="utf-8") as f:
            json.dump({k: dict(zero, **v) for k, v in sorted(COUNTS.items())}, f, indent=1, sort_keys=True)


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzzbase")
    ck = write_checkpoint(str(tmp / "ck"), seed=2)
    out = {"ck": ck, "dir": str(tmp)}
    for packing in ("base3", "2bit"):
        p = str(tmp / f"{packing}.safetensors")
        convert(ck, p, packing=packing, progress=False, log=None)
        m = pk.load(p)
        out[packing] = (p, open(p, "rb").read(), _fingerprint(m))
    return out


def _fingerprint(m):
    return (m.packing, m.config.to_dict(), m.tokenizer_json, m.source,
            {n: bytes(memoryview(np.ascontiguousarray(m.tensor(n))).cast("B")) for n in m.names})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3), max_leaves=5)


def _check_load(category, path, base_fp):
    def run():
        return pk.load(path)
    cls, m = outcome(category, run)
    if cls == "ok" and _fingerprint(m) != base_fp:
        COUNTS[category]["silent"] += 1
        raise AssertionError(f"{category}: a changed file loaded without an error")


# ------------------------------------------------------------------------------ loader
@settings(max_examples=LOADER_EXAMPLES, **SETTINGS)
@given(data=st.data())
def test_fuzz_loader_bytes(bases, data):
    """Truncations and byte flips anywhere (header and data)."""
    packing = data.draw(st.sampled_from(["base3", "2bit"]))
    path, raw, fp = bases[packing]
    (n,) = struct.unpack("<Q", raw[:8])
    kind = data.draw(st.sampled_from(["truncate", "flip_header", "flip_data"]))
    buf = bytearray(raw)
    if kind == "truncate":
        cut = data.draw(st.sampled_from([0, 1, 7, 8, 9, 8 + n - 1, 8 + n, 8 + n + 1, len(raw) - 1])
                        | st.integers(0, len(raw) - 1))
        buf = buf[:cut]
    else:
        lo, hi = (0, 8 + n - 1) if kind == "flip_header" else (8 + n, len(raw) - 1)
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(lo, hi))
            buf[i] ^= data.draw(st.integers(1, 255))
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "m.safetensors")
        open(p, "wb").write(bytes(buf))
        _check_load(kind, p, fp)


@settings(max_examples=LOADER_EXAMPLES, **SETTINGS)
@given(data=st.data())
def test_fuzz_loader_header(bases, data):
    """JSON-level edits of tensor entries: dtype, shape, offsets (aliasing, overlap, gaps), keys."""
    packing = data.draw(st.sampled_from(["base3", "2bit"]))
    path, raw, fp = bases[packing]
    h, body = read_header(path)
    names = [k for k in h if k != "__metadata__"]
    for _ in range(data.draw(st.integers(1, 3))):
        names = [k for k in h if k != "__metadata__"] or ["x"]
        name = data.draw(st.sampled_from(names))
        op = data.draw(st.sampled_from(["dtype", "shape", "offsets", "alias", "drop_key", "extra_key", "rename",
                                        "delete", "value"]))
        e = h.get(name)
        if not isinstance(e, dict):
            continue
        if op == "dtype":
            e["dtype"] = data.draw(st.sampled_from(["F32", "U8", "U16", "BF16", "I64", "F64", "X"]) | json_values)
        elif op == "shape":
            e["shape"] = data.draw(st.lists(st.integers(-3, 2 ** 66) | st.floats(0, 100) | st.booleans(), max_size=4)
                                   | json_values)
        elif op == "offsets":
            e["data_offsets"] = data.draw(st.lists(st.integers(-5, len(body) + 5), min_size=0, max_size=3)
                                          | json_values)
        elif op == "alias":
            other = h.get(data.draw(st.sampled_from(names)))
            if isinstance(other, dict):
                e["data_offsets"] = other.get("data_offsets")
        elif op == "drop_key":
            e.pop(data.draw(st.sampled_from(["dtype", "shape", "data_offsets"])), None)
        elif op == "extra_key":
            e[data.draw(st.text(max_size=4))] = data.draw(json_values)
        elif op == "rename":
            h[data.draw(st.text(max_size=12))] = h.pop(name)
        elif op == "delete":
            h.pop(name)
        else:
            h[name] = data.draw(json_values)
    trailing = data.draw(st.sampled_from([b"", b"", b"\0" * 8]))
    with tempfile.TemporaryDirectory() as d:
        p = write_raw(os.path.join(d, "m.safetensors"), h, body + trailing)
        _check_load("header", p, fp)


CONFIG_KEYS = ["vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size", "hidden_ratio", "rms_norm_eps",
               "num_heads", "expand_ratio", "attn_mode", "use_short_conv", "use_lower_bound", "tie_word_embeddings",
               "bos_token_id", "eos_token_id", "pad_token_id", "model_type", "max_position_embeddings", "torch_dtype"]


@settings(max_examples=LOADER_EXAMPLES, **SETTINGS)
@given(data=st.data())
def test_fuzz_loader_metadata(bases, data):
    """__metadata__ and the config inside it: every key, any JSON type, huge sizes."""
    packing = data.draw(st.sampled_from(["base3", "2bit"]))
    path, raw, fp = bases[packing]
    h, body = read_header(path)
    md = h["__metadata__"]
    kind = data.draw(st.sampled_from(["meta", "config"]))
    if kind == "meta":
        key = data.draw(st.sampled_from(list(md) + ["x"]))
        if data.draw(st.booleans()):
            md[key] = data.draw(json_values)
        elif data.draw(st.booleans()):
            md.pop(key, None)
        else:
            md[key] = data.draw(st.text(max_size=20) | st.sampled_from(["[" * 5000, "1" * 5000, '{"a":1,"a":2}']))
        if data.draw(st.booleans()):
            h["__metadata__"] = data.draw(json_values)
    else:
        cfg = json.loads(md["config"])
        for _ in range(data.draw(st.integers(1, 3))):
            key = data.draw(st.sampled_from(CONFIG_KEYS))
            cfg[key] = data.draw(json_values | st.integers(-1, 10 ** 9) | st.sampled_from([10 ** 6, 10 ** 7, 0, 2 ** 31]))
        md["config"] = json.dumps(cfg)
    with tempfile.TemporaryDirectory() as d:
        p = write_raw(os.path.join(d, "m.safetensors"), h, body)
        _check_load(kind, p, fp)


@settings(max_examples=LOADER_EXAMPLES, **SETTINGS)
@given(data=st.data())
def test_fuzz_loader_values(bases, data):
    """Values inside the data: NaN/Inf/huge/negative floats, bf16 specials, code bytes (hash on and off)."""
    packing = data.draw(st.sampled_from(["base3", "2bit"]))
    path, raw, fp = bases[packing]
    h, body = read_header(path)
    body = bytearray(body)
    names = [k for k in h if k != "__metadata__"]
    name = data.draw(st.sampled_from(names))
    b, e = h[name]["data_offsets"]
    dt = h[name]["dtype"]
    if dt == "F32":
        v = data.draw(st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0, -1.0, 1e-30, 3.4e38, -3.4e38])
                      | st.floats(width=32))
        i = data.draw(st.integers(0, (e - b) // 4 - 1))
        body[b + 4 * i:b + 4 * i + 4] = struct.pack("<f", v)
    elif dt == "U16":
        i = data.draw(st.integers(0, (e - b) // 2 - 1))
        body[b + 2 * i:b + 2 * i + 2] = struct.pack("<H", data.draw(st.sampled_from([0x7FC0, 0x7F80, 0xFF80, 0x7F7F])
                                                                     | st.integers(0, 0xFFFF)))
    else:
        i = data.draw(st.integers(b, e - 1))
        body[i] = data.draw(st.integers(0, 255))
    verify = data.draw(st.booleans())
    with tempfile.TemporaryDirectory() as d:
        p = write_raw(os.path.join(d, "m.safetensors"), h, bytes(body))
        if verify:
            _check_load("values", p, fp)
        else:  # without the hash, a value the format allows may load: it must at least be plausible
            cls, m = outcome("values_noverify", lambda: pk.load(p, verify=False))
            if cls == "ok":
                for n in m.names:
                    a = m.tensor(n)
                    if a.dtype == np.float32:
                        assert np.all(np.isfinite(a)), n
                assert pk.bf16_finite(m.tensor("embeddings")).all()


@settings(max_examples=LOADER_EXAMPLES // 2, **SETTINGS)
@given(data=st.data())
def test_fuzz_loader_structure(bases, data):
    """Raw header structure: length field, nesting, BOM, duplicate keys, trailing bytes, not-JSON."""
    path, raw, fp = bases["base3"]
    (n,) = struct.unpack("<Q", raw[:8])
    hdr, body = raw[8:8 + n], raw[8 + n:]
    kind = data.draw(st.sampled_from(["hlen", "nest", "bom", "dup", "junk", "trailing"]))
    if kind == "hlen":
        blob = struct.pack("<Q", data.draw(st.integers(0, 2 ** 64 - 1))) + hdr + body
    elif kind == "nest":
        depth = data.draw(st.integers(1, 200000))
        blob = None
        hb = b"[" * depth + b"]" * data.draw(st.sampled_from([0, depth]))
    elif kind == "bom":
        blob, hb = None, b"\xef\xbb\xbf" + hdr
    elif kind == "dup":
        blob, hb = None, hdr.rstrip()[:-1] + b',"__metadata__":{}}'
    elif kind == "junk":
        blob, hb = None, data.draw(st.binary(max_size=64))
    else:
        blob = raw + data.draw(st.binary(min_size=1, max_size=64))
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "m.safetensors")
        if blob is None:
            write_raw(p, hb, body)
        else:
            open(p, "wb").write(blob)
        _check_load("structure", p, fp)


# ------------------------------------------------------------------------------ converter
def _leftovers(folder):
    return [f for f in os.listdir(folder) if f.endswith((".tmp", ".partial"))]


@settings(max_examples=CONVERT_EXAMPLES, **SETTINGS)
@given(data=st.data())
def test_fuzz_converter(bases, data):
    """Mutated checkpoints (config, tensor values, safetensors header, shard index, tokenizer) and
    output paths (existing valid output, into the input): success or a project error, the output
    either a valid model or untouched, no temporary file left."""
    with tempfile.TemporaryDirectory() as d:
        ck = os.path.join(d, "ck")
        shards = data.draw(st.booleans())
        if shards:
            write_checkpoint(ck, seed=2, shards=True)
        else:
            shutil.copytree(bases["ck"], ck)
        outdir = os.path.join(d, "out")
        os.mkdir(outdir)
        out = os.path.join(outdir, "m.safetensors")
        existing = None
        if data.draw(st.booleans()):
            shutil.copy(bases["base3"][0], out)
            existing = open(out, "rb").read()
        kind = data.draw(st.sampled_from(["config", "values", "header", "index", "tokenizer", "output"]))
        nonfinite = False
        st_files = sorted(f for f in os.listdir(ck) if f.endswith(".safetensors"))
        if kind == "config":
            p = os.path.join(ck, "config.json")
            cfg = json.load(open(p))
            for _ in range(data.draw(st.integers(1, 2))):
                cfg[data.draw(st.sampled_from(CONFIG_KEYS))] = data.draw(
                    json_values | st.integers(-1, 10 ** 7) | st.sampled_from([10 ** 6, 0]))
            open(p, "w").write(json.dumps(cfg) if data.draw(st.integers(0, 9)) else data.draw(st.text(max_size=10)))
        elif kind in ("values", "header"):
            p = os.path.join(ck, data.draw(st.sampled_from(st_files)))
            h, body = read_header(p)
            body = bytearray(body)
            names = [k for k in h if k != "__metadata__"]
            name = data.draw(st.sampled_from(names))
            if kind == "values":
                b, e = h[name]["data_offsets"]
                i = data.draw(st.integers(0, (e - b) // 2 - 1))
                bits = data.draw(st.sampled_from([0x7FC0, 0x7F80, 0xFF80, 0x0000, 0x3F80]) | st.integers(0, 0xFFFF))
                body[b + 2 * i:b + 2 * i + 2] = struct.pack("<H", bits)
                nonfinite = (bits & 0x7F80) == 0x7F80
            else:
                op = data.draw(st.sampled_from(["shape", "dtype", "offsets", "delete", "rename"]))
                if op == "shape":
                    h[name]["shape"] = data.draw(st.lists(st.integers(-1, 100) | st.floats(0, 9), max_size=3))
                elif op == "dtype":
                    h[name]["dtype"] = data.draw(st.sampled_from(["F32", "F16", "I8", "U8", "BF16"]) | json_values)
                elif op == "offsets":
                    h[name]["data_offsets"] = data.draw(st.lists(st.integers(-1, len(body) + 2), max_size=3))
                elif op == "delete":
                    h.pop(name)
                else:
                    h[name + "x"] = h.pop(name)
            write_raw(p, h, bytes(body))
        elif kind == "index":
            idx = os.path.join(ck, "model.safetensors.index.json")
            wm = json.load(open(idx))["weight_map"] if os.path.exists(idx) else {}
            key = data.draw(st.sampled_from(sorted(wm) or ["model.norm.weight"]))
            wm[key] = data.draw(st.sampled_from(["../x.safetensors", "/etc/passwd", "", "..", "sub/x.safetensors",
                                                 "model.safetensors"]) | json_values)
            open(idx, "w").write(json.dumps({"weight_map": wm} if data.draw(st.integers(0, 5)) else data.draw(json_values)))
        elif kind == "tokenizer":
            blob = data.draw(st.binary(max_size=40) | st.sampled_from([b"{}", b"[]", b'{"a": 1}', b"\xff\xfe",
                                                                       b'{"a": NaN}', b"[" * 50000]))
            open(os.path.join(ck, "tokenizer.json"), "wb").write(blob)
        else:
            target = data.draw(st.sampled_from(["config.json", "tokenizer.json", st_files[0], "new.safetensors", ""]))
            out = os.path.join(ck, target) if target else outdir
            existing = open(out, "rb").read() if os.path.isfile(out) else None
        before_ck = {f: open(os.path.join(ck, f), "rb").read() for f in os.listdir(ck)}
        cls, _ = outcome(f"convert_{kind}", lambda: convert(ck, out, packing=data.draw(st.sampled_from(["base3", "2bit"])),
                                                            progress=False, log=None))
        if kind == "output":
            assert cls == "error", "an output inside the checkpoint was accepted"
        if cls == "ok":
            if nonfinite:
                COUNTS[f"convert_{kind}"]["silent"] += 1
                raise AssertionError("a checkpoint holding NaN/Inf converted without an error")
            pk.load(out)  # what was renamed into place passes the loader
        elif existing is not None:
            if open(out, "rb").read() != existing:
                COUNTS[f"convert_{kind}"]["leftover"] += 1
                raise AssertionError("a failed conversion changed the existing output")
        else:
            assert not os.path.exists(out) or os.path.isdir(out)
        for folder in (outdir, ck):
            if _leftovers(folder):
                COUNTS[f"convert_{kind}"]["leftover"] += 1
                raise AssertionError(f"temporary files left: {_leftovers(folder)}")
        assert {f: open(os.path.join(ck, f), "rb").read() for f in os.listdir(ck)} == before_ck


def test_truncation_at_every_boundary(bases):
    """Every region boundary, exhaustively: bytes 0..9, the header end +-1, each tensor's start,
    start + 1 and end - 1."""
    for packing in ("base3", "2bit"):
        path, raw, fp = bases[packing]
        h, _ = read_header(path)
        (n,) = struct.unpack("<Q", raw[:8])
        cuts = set(range(10)) | {8 + n - 1, 8 + n, 8 + n + 1}
        for k, e in h.items():
            if k != "__metadata__":
                b, end = e["data_offsets"]
                cuts |= {8 + n + b, 8 + n + b + 1, 8 + n + end - 1}
        with tempfile.TemporaryDirectory() as d:
            for cut in sorted(c for c in cuts if c < len(raw)):
                p = os.path.join(d, "t.safetensors")
                open(p, "wb").write(raw[:cut])
                cls, _ = outcome("truncate_boundaries", lambda: pk.load(p))
                assert cls == "error", cut


@pytest.fixture(scope="module")
def state_file(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from mmfree import train as T
    from mmfree.config import HGRNBitConfig
    from mmfree.model import HGRNBit
    import random
    cfg = HGRNBitConfig(vocab_size=20, hidden_size=16, num_hidden_layers=1, intermediate_size=32)
    m = HGRNBit(cfg)
    opt = torch.optim.AdamW(m.parameters())
    m(torch.tensor([[1, 2]])).float().sum().backward()
    opt.step()
    p = str(tmp_path_factory.mktemp("state") / T.STATE_FILE)
    T.save_training_state(p, {"config": cfg.to_dict(), "model": m.state_dict(), "optimizer": opt.state_dict(),
                              "step": 1, "tokens": 2, "max_steps": 3, "elapsed": 0.5, "tokenizer_path": "t.json",
                              "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                                      "torch": torch.get_rng_state()}, "args": {}, "final": False})
    return p


@settings(max_examples=CONVERT_EXAMPLES // 2, **SETTINGS)
@given(data=st.data())
def test_fuzz_training_state(state_file, data):
    """The training-state reader: JSON fields of any type, tensors renamed/retyped, byte flips."""
    from mmfree import train as T
    h, body = read_header(state_file)
    state = json.loads(h["__metadata__"]["state"])
    kind = data.draw(st.sampled_from(["json", "tensor", "bytes"]))
    if kind == "json":
        key = data.draw(st.sampled_from(sorted(state) + ["x"]))
        path = [key]
        if isinstance(state.get(key), dict) and state[key] and data.draw(st.booleans()):
            path.append(data.draw(st.sampled_from(sorted(state[key]))))
        tgt = state
        for k in path[:-1]:
            tgt = tgt[k]
        tgt[path[-1]] = data.draw(json_values)
        h["__metadata__"]["state"] = json.dumps(state)
    elif kind == "tensor":
        names = [k for k in h if k != "__metadata__"]
        name = data.draw(st.sampled_from(names))
        if data.draw(st.booleans()):
            h[data.draw(st.sampled_from(["model/x", "optim/a/b", "rng/other", "optim/0"]))] = h.pop(name)
        else:
            h[name]["dtype"] = data.draw(st.sampled_from(["U8", "I8", "U16", "F16", "BF16"]))
            h[name]["shape"] = [h[name]["data_offsets"][1] - h[name]["data_offsets"][0]] \
                if h[name]["dtype"] in ("U8", "I8") else h[name]["shape"]
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "s.safetensors")
        if kind == "bytes":
            raw = bytearray(open(state_file, "rb").read())
            for _ in range(data.draw(st.integers(1, 3))):
                raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
            open(p, "wb").write(bytes(raw))
        else:
            write_raw(p, h, body)
        cls, got = outcome(f"training_state_{kind}", lambda: T.load_training_state(p))
        if cls == "ok" and _state_fp(got) != _state_fp(T.load_training_state(state_file)):
            COUNTS[f"training_state_{kind}"]["silent"] += 1
            raise AssertionError("a changed training state loaded without an error")


def _state_fp(s):
    def b(t):
        return bytes(memoryview(t.contiguous().view(-1).view(__import__("torch").uint8).numpy()))
    return (json.dumps({k: v for k, v in s.items() if k not in ("model", "optimizer", "rng")}, sort_keys=True),
            {k: b(v) for k, v in s["model"].items()},
            json.dumps(s["optimizer"]["param_groups"], sort_keys=True, default=str),
            {(pid, k): (b(v) if hasattr(v, "numpy") else v) for pid, d in s["optimizer"]["state"].items()
             for k, v in d.items()},
            s["rng"]["python"], bytes(s["rng"]["numpy"][1].tobytes()), s["rng"]["numpy"][2:], b(s["rng"]["torch"]))
