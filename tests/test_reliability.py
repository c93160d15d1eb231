"""Bad files, full disks, planted links, pickles: a clear project error every time, nothing lost,
no code run (issue 12). Each test names the failure it guards against."""

import errno
import json
import os
import pickle
import struct
import subprocess
import sys
import warnings

import numpy as np
import pytest

from mmfree import fileio
from mmfree import numerics as nx
from mmfree import packed as pk
from mmfree import safetensors_io as sio
from mmfree.convert import convert
from mmfree.errors import ConfigError, FormatError, MMFreeError, OutputError

from tinymodel import read_header, tree_digest, write_checkpoint, write_raw

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLED = os.path.join(ROOT, "python", "mmfree", "data", "bundled.safetensors")


def leftovers(folder):
    return sorted(f for f in os.listdir(folder) if f.endswith((".tmp", ".partial")))


@pytest.fixture
def ck(tmp_path):
    return write_checkpoint(str(tmp_path / "ck"))


@pytest.fixture
def good(tmp_path, ck):
    out = str(tmp_path / "good.safetensors")
    convert(ck, out, packing="base3", progress=False, log=None)
    return out


# ------------------------------------------------------------------------------ converter safety
def test_convert_writes_hash_and_loads(good, ck, tmp_path):
    import pathlib
    convert(pathlib.Path(ck), tmp_path / "p.safetensors", progress=False, log=None)  # os.PathLike works too
    assert pk.load(tmp_path / "p.safetensors").integrity == "verified"
    m = pk.load(good)
    assert m.integrity == "verified"
    assert pk.load(good, verify=False).integrity == "not checked"
    assert read_header(good)[0]["__metadata__"][pk.INTEGRITY_KEY].startswith("sha256:")


def test_output_into_source_refused(tmp_path, ck):
    before = tree_digest(ck)
    for target in ("model.safetensors", "config.json", "tokenizer.json", "new.safetensors"):
        with pytest.raises(OutputError, match="input"):
            convert(ck, os.path.join(ck, target), progress=False, log=None)
    # a hard link to a source file, outside the folder
    link = str(tmp_path / "alias.safetensors")
    os.link(os.path.join(ck, "model.safetensors"), link)
    with pytest.raises(OutputError, match="same file"):
        convert(ck, link, progress=False, log=None)
    # a symlink outside the folder that points into it
    sl = str(tmp_path / "sl.safetensors")
    os.symlink(os.path.join(ck, "model.safetensors"), sl)
    with pytest.raises(OutputError, match="input"):
        convert(ck, sl, progress=False, log=None)
    assert tree_digest(ck) == before


def test_planted_symlinks_are_not_followed(tmp_path, ck):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out.safetensors"
    # the fixed temporary name of earlier versions, planted as a link: ignored now (names are unique)
    os.symlink(victim, str(out) + ".partial")
    # and the output itself a link to the victim: replaced by the new file, the victim untouched
    os.symlink(victim, out)
    convert(ck, str(out), progress=False, log=None)
    assert victim.read_text() == "precious"
    assert not os.path.islink(out) and pk.load(str(out)).integrity == "verified"
    assert os.path.islink(str(out) + ".partial")  # not ours: left alone


def test_nan_source_leaves_existing_output_untouched(tmp_path, good):
    bad_ck = write_checkpoint(str(tmp_path / "nan"), seed=3)
    p = os.path.join(bad_ck, "model.safetensors")
    h, data = read_header(p)
    b, _ = h["model.layers.1.attn.i_proj.weight"]["data_offsets"]
    data = bytearray(data)
    data[b:b + 2] = struct.pack("<H", 0x7FC0)  # a bf16 NaN in a weight
    write_raw(p, h, bytes(data))
    before = open(good, "rb").read()
    with pytest.raises(FormatError, match="i_proj.weight.*NaN"):
        convert(bad_ck, good, progress=False, log=None)
    assert open(good, "rb").read() == before
    assert leftovers(tmp_path) == []


def test_invalid_result_is_never_renamed(tmp_path, ck, good, monkeypatch):
    """A file that fails the loader after writing (here: finite inputs whose folded gain overflows)
    never replaces the output."""
    p = os.path.join(ck, "model.safetensors")
    h, data = read_header(p)
    data = bytearray(data)
    for name in ("model.layers.0.attn_norm.weight", "model.layers.0.attn.i_proj.norm.weight"):
        b, e = h[name]["data_offsets"]
        data[b:e] = np.full((e - b) // 2, 0x7F00, np.uint16).tobytes()  # 1.7e38: the product overflows
    write_raw(p, h, bytes(data))
    before = open(good, "rb").read()
    with pytest.raises(FormatError, match="fails its own checks.*layers.0"):
        convert(ck, good, progress=False, log=None)
    assert open(good, "rb").read() == before and leftovers(tmp_path) == []


class _FullDisk:
    """A file object that accepts ``room`` bytes, then fails with ENOSPC (also in flush/close)."""

    def __init__(self, f, room):
        self._f, self._room = f, room

    def write(self, b):
        n = len(memoryview(b).cast("B"))
        if n > self._room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= n
        return self._f.write(b)

    def flush(self):
        if self._room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._f.flush()

    def close(self):
        try:
            self.flush()
        finally:
            self._f.close()

    def __getattr__(self, k):
        return getattr(self._f, k)


@pytest.mark.parametrize("room", [0, 100, 3000])
def test_full_disk(tmp_path, ck, good, monkeypatch, room):
    real = os.fdopen

    def fdopen(fd, *a, **kw):
        return _FullDisk(real(fd, *a, **kw), room)
    monkeypatch.setattr(sio.os, "fdopen", fdopen)
    before = open(good, "rb").read()
    with pytest.raises(OutputError, match="No space left on device.*untouched"):
        convert(ck, good, progress=False, log=None)
    assert open(good, "rb").read() == before
    assert leftovers(tmp_path) == []


def test_file_size_limit_subprocess(tmp_path, ck, good):
    """A real kernel write error (RLIMIT_FSIZE: EFBIG) in a child process: clean error, no leftovers."""
    code = (f"import resource, sys; sys.path.insert(0, {os.path.join(ROOT, 'python')!r});"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096));"
            "from mmfree.convert import convert; from mmfree.errors import OutputError\n"
            "try:\n"
            f"    convert({ck!r}, {good!r}, progress=False, log=None)\n"
            "except OutputError as e:\n    print('ERR', e); sys.exit(2)\n")
    before = open(good, "rb").read()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 2 and "File too large" in r.stdout and "Traceback" not in r.stderr, r.stderr
    assert open(good, "rb").read() == before and leftovers(tmp_path) == []


def test_atomic_helpers(tmp_path):
    p = str(tmp_path / "r.json")
    fileio.write_json(p, {"a": 1})
    with pytest.raises(ZeroDivisionError):
        with fileio.atomic_open(p, "w") as f:
            f.write("half")
            1 / 0
    assert json.load(open(p)) == {"a": 1} and leftovers(tmp_path) == []

    def reject(tmp):
        raise FormatError("no")
    with pytest.raises(FormatError):
        fileio.write_text(p, "x", validate=reject)
    assert json.load(open(p)) == {"a": 1} and leftovers(tmp_path) == []
    mask = os.umask(0o022)
    os.umask(mask)
    q = str(tmp_path / "new.txt")
    fileio.write_text(q, "x")  # the mode open() would give, not mkstemp's 0600
    assert os.stat(q).st_mode & 0o777 == 0o666 & ~mask
    os.chmod(q, 0o640)
    fileio.write_text(q, "y")  # an existing file keeps its mode
    assert os.stat(q).st_mode & 0o777 == 0o640
    with pytest.raises(OutputError, match="directory"):
        fileio.write_text(str(tmp_path), "x")
    with pytest.raises(OutputError, match="does not exist"):
        fileio.check_output_path(str(tmp_path / "no" / "x"))


# ------------------------------------------------------------------------------ training state
def _payload(marker):
    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    return pickle.dumps({"model": Boom()})


def test_crafted_pickle_never_runs(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("tokenizers")
    from mmfree import train as T
    marker = tmp_path / "PWNED"
    out = tmp_path / "run"
    out.mkdir()
    (out / T.LEGACY_STATE_FILE).write_bytes(_payload(marker))
    with pytest.raises(FormatError, match="pickle.*not loaded"):
        T.train(train_data=["unused.txt"], out=str(out), resume=True, device="cpu")
    # the same pickle under the new name: the strict reader refuses it as a safetensors file
    (out / T.STATE_FILE).write_bytes(_payload(marker))
    with pytest.raises(FormatError):
        T.train(train_data=["unused.txt"], out=str(out), resume=True, device="cpu")
    with pytest.raises(FormatError):
        T.load_training_state(str(out / T.STATE_FILE))
    assert not marker.exists()
    assert "torch.load" not in open(T.__file__).read().replace("weights_only=True", "")


# ------------------------------------------------------------------------------ strict reader
def _edit(good, tmp_path, fn, name="e.safetensors"):
    h, data = read_header(good)
    data = bytearray(data)
    r = fn(h, data)
    if r is not None:
        h, data = r
    return write_raw(str(tmp_path / name), h, bytes(data))


def _span(h, name):
    return tuple(h[name]["data_offsets"])


CASES = {
    "overlap": (lambda h, d: h["layers.0.g_norm"].update(data_offsets=list(_span(h, "layers.0.attn_norm"))),
                "overlap|gap"),
    "trailing": (lambda h, d: (h, d + b"\0" * 8), "trailing"),
    "float shape": (lambda h, d: h["final_norm"].update(shape=[16.0]), "invalid shape"),
    "bool shape": (lambda h, d: h["lm_head.alpha"].update(shape=[True]), "invalid shape"),
    "str shape": (lambda h, d: h["lm_head.alpha"].update(shape="1"), "invalid shape"),
    "huge dim": (lambda h, d: h["lm_head.alpha"].update(shape=[2 ** 64, 0]), "exceeds"),
    "list dtype": (lambda h, d: h["final_norm"].update(dtype=["F32"]), "dtype"),
    "str offsets": (lambda h, d: h["final_norm"].update(data_offsets=["0", "4"]), "data_offsets"),
    "extra key": (lambda h, d: h["final_norm"].update(extra=1), "exactly dtype"),
    "metadata list": (lambda h, d: h.update(__metadata__=[1]), "__metadata__"),
    "metadata int": (lambda h, d: h["__metadata__"].update(format_version=1), "__metadata__"),
    "config list": (lambda h, d: h["__metadata__"].update(config="[1]"), "config"),
    "config deep": (lambda h, d: h["__metadata__"].update(config="[" * 100000), "config"),
    "config big int": (lambda h, d: h["__metadata__"].update(config='{"vocab_size": ' + "9" * 5000 + "}"),
                       "config"),
    "layers 1e6": (lambda h, d: h["__metadata__"].update(
        config=json.dumps(dict(json.loads(h["__metadata__"]["config"]), num_hidden_layers=10 ** 6))),
        "implies .* tensors"),
    "bos >= V": (lambda h, d: h["__metadata__"].update(
        config=json.dumps(dict(json.loads(h["__metadata__"]["config"]), bos_token_id=40))), "bos_token_id"),
    "eps string": (lambda h, d: h["__metadata__"].update(
        config=json.dumps(dict(json.loads(h["__metadata__"]["config"]), rms_norm_eps="x"))), "rms_norm_eps"),
    "tokenizer not json": (lambda h, d: h["__metadata__"].update(tokenizer="hello"), "tokenizer"),
    "version null": (lambda h, d: h["__metadata__"].update(format_version="x"), "format_version"),
    "bad hash": (lambda h, d: h["__metadata__"].update(integrity="sha256:" + "0" * 64), "integrity check failed"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_header_is_a_format_error(good, tmp_path, case):
    fn, msg = CASES[case]
    p = _edit(good, tmp_path, fn)
    with pytest.raises(FormatError, match=msg):
        pk.load(p)


def test_duplicate_keys_and_raw_header_garbage(good, tmp_path):
    raw = open(good, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    hdr = raw[8:8 + n].rstrip()
    dup = hdr[:-1] + b',"final_norm":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}'
    with pytest.raises(FormatError, match="duplicate key"):
        pk.load(write_raw(str(tmp_path / "d.safetensors"), dup, raw[8 + n:]))
    for i, junk in enumerate((b"[" * 100000, b"\xef\xbb\xbf" + hdr, b'{"a": NaN}', b"{" + b"9" * 5000)):
        with pytest.raises(FormatError):
            pk.load(write_raw(str(tmp_path / f"j{i}.safetensors"), junk, raw[8 + n:]))


def test_nan_and_implausible_values(good, tmp_path):
    h, _ = read_header(good)

    def put(name, value, dtype=np.float32, index=0):
        def fn(hh, d):
            b, _ = hh[name]["data_offsets"]
            v = np.array([value], dtype).tobytes()
            off = b + index * len(v)
            d[off:off + len(v)] = v
        return fn
    cases = [(put("embeddings", 0x7FC0, np.uint16, 5), "embeddings.*NaN"),
             (put("embeddings", 0xFF80, np.uint16, 7), "embeddings.*NaN or infinity"),
             (put("layers.0.i.alpha", 0.0), "alpha"), (put("layers.0.i.alpha", -3.4e38), "alpha"),
             (put("layers.1.f.gain", -2.5e22), "beyond"),
             (put("lower_bounds", -0.5, index=20), "outside \\[0, 1\\]"),
             (put("lower_bounds", 0.25, index=0), "row 0"),
             (put("final_norm", float("inf")), "NaN or infinity")]
    for i, (fn, msg) in enumerate(cases):
        with pytest.raises(FormatError, match=msg):
            pk.load(_edit(good, tmp_path, fn, f"v{i}.safetensors"))


def test_flipped_code_byte_caught_by_hash(good, tmp_path):
    h, data = read_header(good)
    b, _ = h["layers.1.down.codes"]["data_offsets"]
    data = bytearray(data)
    data[b] = (data[b] + 1) % 243  # another valid base-3 byte: only the hash can tell
    p = write_raw(str(tmp_path / "flip.safetensors"), h, bytes(data))
    with pytest.raises(FormatError, match="integrity check failed"):
        pk.load(p)
    assert pk.load(p, verify=False).integrity == "not checked"  # the explicit opt-out


def test_files_without_hash_still_load():
    m = pk.load(BUNDLED)  # written before the hash existed: tensors unchanged, nothing to verify
    assert m.integrity == "absent"


def test_special_paths(tmp_path):
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    for p in (str(tmp_path), fifo, "/dev/null", str(tmp_path / "missing"), "a\0b"):
        with pytest.raises(FormatError):
            pk.load(p)


def test_truncated_while_running_is_no_sigbus(tmp_path, good):
    """The golden backend holds the model in memory: truncating the file under it is harmless."""
    import shutil
    from mmfree.golden import GoldenModel
    p = str(tmp_path / "live.safetensors")
    shutil.copy(good, p)
    g = GoldenModel(p)
    a = g.step(3)
    with open(p, "r+b") as f:
        f.truncate(100)
    g.reset()
    assert np.array_equal(g.step(3), a)
    st = sio.SafeTensorsFile(good)
    shutil.copy(good, p)
    st2 = sio.SafeTensorsFile(p)
    with open(p, "r+b") as f:
        f.truncate(st.data_start + 10)
    with pytest.raises(FormatError, match="changed"):
        st2.get("final_norm")


# ------------------------------------------------------------------------------ checkpoints
def test_shard_index_confined_to_folder(tmp_path):
    ck = write_checkpoint(str(tmp_path / "sh"), shards=True)
    outside = tmp_path / "evil.safetensors"
    os.rename(os.path.join(ck, "model-00002-of-00002.safetensors"), outside)
    idx = os.path.join(ck, "model.safetensors.index.json")
    d = json.load(open(idx))
    for bad in ("../evil.safetensors", str(outside), "", ".."):
        d2 = dict(d, weight_map={k: (bad if v.startswith("model-00002") else v) for k, v in d["weight_map"].items()})
        json.dump(d2, open(idx, "w"))
        with pytest.raises(FormatError, match="not a plain file name|not a file name"):
            convert(ck, str(tmp_path / "o.safetensors"), progress=False, log=None)
    for bad_map in ([1, 2], {"model.norm.weight": 3}):
        json.dump({"weight_map": bad_map}, open(idx, "w"))
        with pytest.raises(FormatError):
            convert(ck, str(tmp_path / "o.safetensors"), progress=False, log=None)
    assert not os.path.exists(tmp_path / "o.safetensors")


def test_checkpoint_faults(tmp_path):
    ck = write_checkpoint(str(tmp_path / "c2"), shards=True)
    out = str(tmp_path / "o.safetensors")
    # the same tensor in both shards
    s2 = os.path.join(ck, "model-00002-of-00002.safetensors")
    s1 = os.path.join(ck, "model-00001-of-00002.safetensors")
    h1, d1 = read_header(s1)
    h2, d2 = read_header(s2)
    name = next(k for k in h1 if k != "__metadata__")
    b, e = h1[name]["data_offsets"]
    h2[name] = dict(h1[name], data_offsets=[len(d2), len(d2) + e - b])
    write_raw(s2, h2, d2 + d1[b:e])
    with pytest.raises(FormatError, match="two files"):
        convert(ck, out, progress=False, log=None)
    ck3 = write_checkpoint(str(tmp_path / "c3"))
    cfg = json.load(open(os.path.join(ck3, "config.json")))
    for k, v in (("rms_norm_eps", "x"), ("num_hidden_layers", 10 ** 6), ("hidden_size", True), ("vocab_size", 2.5)):
        json.dump(dict(cfg, **{k: v}), open(os.path.join(ck3, "config.json"), "w"))
        with pytest.raises(MMFreeError):
            convert(ck3, out, progress=False, log=None)
    json.dump(cfg, open(os.path.join(ck3, "config.json"), "w"))
    for tok in (b"\xff\xfe not utf8", b"not json", b"[1, 2]"):
        open(os.path.join(ck3, "tokenizer.json"), "wb").write(tok)
        with pytest.raises(FormatError, match="tokenizer.json"):
            convert(ck3, out, progress=False, log=None)
    with pytest.raises(FormatError, match="not a checkpoint folder"):
        convert(os.path.join(ck3, "config.json"), out, progress=False, log=None)
    assert not os.path.exists(out) and leftovers(tmp_path) == []


# ------------------------------------------------------------------------------ numerics
def test_numerics_defined_for_every_input():
    """NaN and infinities never reach a float-to-int conversion in the spec (no cast warnings), and
    give the values the hardware gives: NaN skipped by absmax, code 0, exp2 passes NaN through."""
    u = np.array([[np.nan, 1.0, -2.0, np.inf], [np.nan, np.nan, np.nan, np.nan], [3.0, -np.inf, 0.0, 1.0]],
                 np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "invalid value encountered in cast" would fail here
        with np.errstate(invalid="ignore", over="ignore"):
            m = nx.absmax(u)
            q = nx.quantize(u, m)
            e = nx.exp2(np.array([np.nan, 1e30, -1e30, 3.5, -np.inf], np.float32))
            s = nx.sigmoid(np.array([np.nan, np.inf, -np.inf], np.float32))
    assert m[0] == np.inf and m[1] == 0 and m[2] == np.inf
    assert np.array_equal(q[1], np.zeros(4)) and q[0, 0] == 0 and not np.isnan(q).any()
    assert np.isnan(e[0]) and e[1] == nx.exp2(np.float32(126)) and e[2] == nx.exp2(np.float32(-126))
    assert e[3] == nx.exp2(np.float32(3.5)) and e[4] == nx.exp2(np.float32(-126))
    assert np.isnan(s[0]) and s[1] == 1.0 and s[2] < 1e-12


def test_exp2_clamp_constant_matches_header():
    text = open(os.path.join(ROOT, "hls", "include", "mmfree_numerics.h")).read()
    assert f"EXP2_T_MAX = {float(nx.EXP2_T_MAX)}f" in text


def test_driver_refuses_nan_and_bad_ids(good, tmp_path):
    from mmfree import csim, emu
    from mmfree.driver import Accelerator
    from conftest import build_csim
    build_csim("kv260")
    m = pk.load(good)
    data = m._st._data.copy()
    b, _ = m._st.span("embeddings")
    data[b:b + 2] = np.array([0x7FC0], np.uint16).view(np.uint8)
    m._st._data = data
    ol = emu.Overlay(board="kv260", lib=csim.load("kv260"))
    with pytest.raises(ConfigError, match="NaN"):
        Accelerator(ol, m)
    acc = Accelerator(ol, pk.load(good))
    for bad in (1.5, float("nan"), None, True, -1, 40):
        with pytest.raises(ConfigError):
            acc.step(bad)
    with pytest.raises(ConfigError):
        acc.prefill([1, float("nan")])


def test_add_integrity_keeps_every_tensor(tmp_path):
    dst = str(tmp_path / "bundled-hashed.safetensors")
    old = pk.load(BUNDLED)
    new = pk.add_integrity(BUNDLED, dst)
    assert pk.load(dst).integrity == "verified"
    assert new.config.to_dict() == old.config.to_dict() and new.tokenizer_json == old.tokenizer_json
    for n in old.names:
        assert np.array_equal(new.tensor(n), old.tensor(n)) and new.tensor(n).dtype == old.tensor(n).dtype, n
    assert leftovers(tmp_path) == []


def test_hash_placeholder_text_elsewhere_in_header(tmp_path):
    """A metadata value holding the placeholder text does not confuse the writer's patch."""
    p = str(tmp_path / "x.safetensors")
    sio.write_file(p, {"a": np.arange(4, dtype=np.float32)},
                   {"note": "sha256:" + "0" * 64, "integrity": "stale"}, integrity_key="integrity")
    st = sio.SafeTensorsFile(p)
    assert st.metadata["note"] == "sha256:" + "0" * 64
    assert st.metadata["integrity"] == st.integrity_digest("integrity")


def test_concurrent_writers_never_share_a_temporary_file(tmp_path):
    out = str(tmp_path / "o.safetensors")
    specs = [("a", np.dtype(np.float32), (3,))]
    w1 = sio.StreamingWriter(out, specs, {"who": "one"})
    w2 = sio.StreamingWriter(out, specs, {"who": "two"})
    assert w1.temp_path != w2.temp_path
    w1.write("a", np.ones(3, np.float32))
    w2.write("a", np.zeros(3, np.float32))
    w1.close()
    assert sio.SafeTensorsFile(out).metadata["who"] == "one"
    w2.close()
    st = sio.SafeTensorsFile(out)
    assert st.metadata["who"] == "two" and np.array_equal(st.get("a"), np.zeros(3))
    assert leftovers(tmp_path) == []


def test_cli_no_verify_is_the_explicit_opt_out(good, tmp_path, capsys):
    """`mmfree info` refuses the file with a flipped code byte (the hash) with one line and exit 2;
    `--no-verify` loads it and says the hash was not checked."""
    from mmfree import cli
    h, data = read_header(good)
    b, _ = h["layers.1.down.codes"]["data_offsets"]
    data = bytearray(data)
    data[b] = (data[b] + 1) % 243
    p = write_raw(str(tmp_path / "flip.safetensors"), h, bytes(data))
    try:
        assert cli.main(["info", "--model", p]) == 2
        assert "integrity check failed" in capsys.readouterr().err
        assert cli.main(["info", "--model", p, "--no-verify", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["integrity"] == "not checked"
        assert cli.main(["info", "--model", good, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["integrity"] == "verified"
    finally:
        pk.VERIFY_DEFAULT = True
