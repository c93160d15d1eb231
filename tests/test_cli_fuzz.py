"""The `mmfree` command line under random arguments (hypothesis): every outcome is success (exit 0) or a
clean failure (exit 2, one `error:` line on stderr, no traceback); nothing hangs; no file is left
behind in the working folder or the temporary folder. Plus fixed cases from the reliability review
(--seed -1, --temperature nan, a non-UTF-8 prompt, bench --repeats 0, bad perplexity inputs, info
printing control characters, perplexity's temporary files).

Each invocation runs in-process (cli.main) with small models, so a few hundred cases fit in about a
minute on two cores; a SIGALRM watchdog turns a hang into a failure.
"""

import contextlib
import io
import os
import shutil
import signal

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

HANG_S = 60


class Hang(BaseException):
    """Raised by the watchdog; a BaseException so that no handler in the CLI can swallow it."""


@contextlib.contextmanager
def _watchdog(seconds, what):
    def on_alarm(signum, frame):
        raise Hang(f"hang: {what} ran for more than {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def invoke(argv):
    """(rc, stdout, stderr) of `mmfree ARGV` run in-process; any exception escaping main is a crash."""
    from mmfree.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _watchdog(HANG_S, argv):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def assert_clean(argv, rc, out, err):
    assert rc in (0, 2), (argv, rc, err[-2000:])
    assert "Traceback" not in err and "Traceback" not in out, (argv, err[-2000:])
    if rc == 2:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ": error: " in ln]
        assert len(errors) == 1 and lines[-1] == errors[0], (argv, err)
        assert lines[-1].startswith("mmfree"), (argv, err)


def listing(*folders):
    return {os.path.join(dp, f) for d in folders for dp, _, fs in os.walk(d) for f in fs}


# ------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Files the fuzzer picks from: a tiny model, the bundled model, broken files, small texts."""
    from conftest import ROOT
    from mmfree.generate import make_random_model
    base = tmp_path_factory.mktemp("cli_fuzz")
    models = tmp_path_factory.mktemp("cli_fuzz_models")
    tiny = make_random_model(str(models / "tiny.safetensors"),   # 300 ids: byte-level prompts fit
                             dict(vocab_size=300, hidden_size=32, num_hidden_layers=1, intermediate_size=64))
    files = {
        "tiny": tiny,
        "bundled": os.path.join(ROOT, "python", "mmfree", "data", "bundled.safetensors"),
        "missing": str(base / "missing.safetensors"),
        "folder": str(base),
    }
    (base / "garbage.safetensors").write_bytes(b"\x00not a model\xff" * 10)
    files["garbage"] = str(base / "garbage.safetensors")
    (base / "empty.txt").write_bytes(b"")
    files["empty_text"] = str(base / "empty.txt")
    (base / "latin1.txt").write_bytes("caf\xe9 cr\xe8me br\xfbl\xe9e\n".encode("latin-1") * 50)
    files["latin1_text"] = str(base / "latin1.txt")
    (base / "small.txt").write_text("The kernel schedules tasks on every CPU of the machine.\n" * 40)
    files["small_text"] = str(base / "small.txt")
    (base / "bad.txt.xz").write_bytes(b"\xfd7zXZ\x00 this is not xz")
    files["bad_xz"] = str(base / "bad.txt.xz")
    (base / "tok.json").write_text("{not json")
    files["bad_tokenizer"] = str(base / "tok.json")
    return files


def _values():
    """Values for any flag: good small ones, boundaries, and junk."""
    return st.one_of(
        st.sampled_from(["0", "1", "2", "3", "-1", "-0", "0.5", "1.0", "1e-310", "1e9", "nan", "inf", "-inf",
                         "", "abc", "1,2", "1,,2", "2**70", "18446744073709551616", "65537", "0x10", " 1",
                         "kv260", "KV260", "pynq-z2", "zcu104", "nosuchboard", "370M", "1.3B", "2.7B",
                         "base3", "2bit", "golden", "emu", "torch", "pynq", "\x1b[31m", "\x00"]),
        st.integers(-3, 5).map(str),
        st.binary(max_size=6).map(os.fsdecode),          # argv bytes that are not UTF-8 (surrogates)
        st.text(max_size=8),
    )


GENERATE_FLAGS = ["--backend", "--board", "--prompt", "--prompt-ids", "--max-new-tokens", "--temperature",
                  "--top-k", "--top-p", "--seed", "--timeout", "-n", "-p", "--overlay"]
GENERATE_SWITCHES = ["--greedy", "--no-eos", "--byte-tokenizer", "--json"]
BENCH_FLAGS = ["--backend", "--board", "--prompt-len", "--max-new-tokens", "--new-tokens", "--warmup", "--repeats",
               "--seed", "--project", "--size", "--packing", "--ddr-efficiency"]
BENCH_SWITCHES = ["--json", "-q", "--project"]
PPL_FLAGS = ["--backend", "--tokenizer", "--seq-len", "--max-windows"]
PPL_SWITCHES = ["--json", "-q"]


GOOD = {  # values each flag accepts (half of the drawn values come from here)
    "--backend": ["golden", "emu"], "--board": ["kv260", "KV260", "zcu104"], "--prompt": ["The", "x y", "\u00e9t\u00e9"],
    "-p": ["Hi"], "--prompt-ids": ["1,2", "0", "5"], "--max-new-tokens": ["0", "1", "4"], "-n": ["2"],
    "--temperature": ["0", "0.7", "1e-300", "50"], "--top-k": ["0", "1", "5"], "--top-p": ["0.5", "1", "1e-300"],
    "--seed": ["0", "7", str(2**63 - 1)], "--timeout": ["0.5", "30"], "--overlay": ["x.bit"],
    "--prompt-len": ["1", "3"], "--new-tokens": ["1", "2"], "--warmup": ["0", "1"], "--repeats": ["1", "2"],
    "--project": ["kv260", "pynq-z2"], "--size": ["370M", "2.7B"], "--packing": ["2bit", "base3"],
    "--ddr-efficiency": ["0.5", "1"], "--tokenizer": ["missing.json"], "--seq-len": ["8", "16"],
    "--max-windows": ["1", "2"],
}


@st.composite
def options(draw, flags, switches, n=3):
    argv = []
    for _ in range(draw(st.integers(0, n))):
        if draw(st.booleans()):
            flag = draw(st.sampled_from(flags))
            good = GOOD.get(flag)
            argv += [flag, draw(st.sampled_from(good)) if good and draw(st.booleans()) else draw(_values())]
        else:
            argv.append(draw(st.sampled_from(switches)))
    return argv


# `generate`, `bench` and `perplexity` never run long here: every valid --max-new-tokens, --repeats,
# ... a strategy can produce is tiny, the models are small, and --max-windows caps perplexity.
@st.composite
def command(draw, world):
    which = draw(st.sampled_from(["generate", "bench", "perplexity", "info", "junk"]))
    model = draw(st.sampled_from(["tiny"] * 6 + ["missing", "folder", "garbage"]))
    if which == "generate":
        argv = ["generate", "--model", world[model], "--backend", draw(st.sampled_from(["golden", "emu"])),
                "-n", "3"] + draw(options(GENERATE_FLAGS, GENERATE_SWITCHES))
    elif which == "bench":
        argv = ["bench", "--model", world[model], "--backend", "golden", "-q", "--repeats", "1", "--warmup", "0",
                "-n", "2", "--prompt-len", "2"] + draw(options(BENCH_FLAGS, BENCH_SWITCHES))
    elif which == "perplexity":
        text = draw(st.sampled_from(["small_text", "empty_text", "latin1_text", "bad_xz", "missing", "folder"]))
        m = draw(st.sampled_from(["bundled", "tiny", "missing", "garbage"]))
        argv = ["perplexity", "--model", world[m], "--text", world[text], "--max-windows", "2", "--seq-len", "16",
                "-q"] + draw(options(PPL_FLAGS, PPL_SWITCHES, n=3))
        if draw(st.booleans()):
            argv += ["--tokenizer", world["bad_tokenizer"]]
    elif which == "info":
        argv = ["info", "--model", world[draw(st.sampled_from(["tiny", "missing", "folder", "garbage"]))]]
        argv += draw(st.sampled_from([[], ["--json"], ["--bogus"]]))
    else:
        argv = draw(st.lists(_values(), max_size=4))
        # (not bench or perplexity: with no arguments at all they run the bundled model for a while)
        argv = [draw(st.sampled_from(["generate", "info", "convert", "train", "nope"]))] + argv
    # big-but-valid values would only make a run long: keep counts tiny where a flag takes one
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        out.append(a)
        if a in ("--max-new-tokens", "-n", "--new-tokens", "--repeats", "--warmup", "--prompt-len", "--max-windows",
                 "--seq-len") and i + 1 < len(argv):
            v = argv[i + 1]
            try:
                if int(v) > 16:
                    v = "1e9" if int(v) > 65536 else "4"   # out of range (rejected) or small
            except ValueError:
                pass
            out.append(v)
            i += 1
        i += 1
    return out


def test_cli_fuzz(world, csim_lib, tmp_path, monkeypatch):
    """Random command lines: only exit 0 or a clean exit 2, no traceback, no hang, no leftover file."""
    work, tmp = tmp_path / "cwd", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setenv("MMFREE_PYNQ", "0")
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    before = listing(world["folder"])
    seen = {"ok": 0, "error": 0}

    @settings(max_examples=600, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.data())
    def run(data):
        argv = data.draw(command(world))
        rc, out, err = invoke(argv)
        assert_clean(argv, rc, out, err)
        seen["ok" if rc == 0 else "error"] += 1
        key = f"{argv[0]} rc={rc}"
        seen[key] = seen.get(key, 0) + 1
        assert listing(str(work), str(tmp)) == set(), (argv, listing(str(work), str(tmp)))
        assert listing(world["folder"]) == before, argv

    run()
    print("cli fuzz outcomes:", seen)
    assert seen["ok"] > 0 and seen["error"] > 0, seen


# ------------------------------------------------------------------------------------- fixed cases
@pytest.mark.parametrize("argv, msg", [
    (["generate", "--seed", "-1"], "--seed"),
    (["generate", "--temperature", "nan"], "--temperature"),
    (["generate", "--temperature", "inf"], "--temperature"),
    (["generate", "--max-new-tokens", str(2**63)], "--max-new-tokens"),
    (["generate", "--prompt", os.fsdecode(b"\xff\xfe")], "UTF-8"),
    (["generate", "--greedy", "--temperature", "0.8"], "--greedy"),
    (["generate", "--board", "nosuchboard"], "unknown board"),
    (["bench", "--repeats", "0"], "--repeats"),
    (["bench", "--warmup", "-1"], "--warmup"),
    (["bench", "--prompt-len", "-3"], "--prompt-len"),
    (["bench", "--new-tokens", "-1"], "--new-tokens"),
    (["bench", "--project", "--board", "kv260", "--size", "370M", "--ddr-efficiency", "0"], "--ddr-efficiency"),
    (["bench", "--project", "--board", "kv260", "--size", "370M", "--ddr-efficiency", "nan"], "--ddr-efficiency"),
    (["bench", "--project", "--board", "pynq-z2", "--size", "2.7B"], "does not fit"),
    (["bench", "--project", "pynq-z2", "--size", "1.3B"], "does not fit"),
    (["bench", "--project", "--board", "kv260"], "--size"),
    (["bench", "--size", "1.3B"], "--project"),
    (["perplexity", "--seq-len", "0"], "--seq-len"),
    (["perplexity", "--max-windows", "0"], "--max-windows"),
    (["train", "--train-data", "/nonexistent/text.txt", "--out", "x"], "no such text file"),
    (["train", "--lr", "nan", "--train-data", "a", "--out", "x"], "--lr"),
])
def test_bad_arguments_one_line_exit_2(argv, msg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, err = invoke(argv)
    assert rc == 2, (argv, rc, err)
    assert_clean(argv, rc, out, err)
    assert msg in err, (argv, err)
    assert os.listdir(tmp_path) == []


def test_bench_project_prints_assumptions_and_agrees_with_cycles():
    """bench --project states clock, DDR peak and efficiency, and its tokens/s is the figure that
    `python -m mmfree.cycles` prints for the same board, size and packing (one code path)."""
    import re
    import subprocess
    import sys
    rc, out, err = invoke(["bench", "--project", "--board", "kv260", "--size", "1.3B", "--packing", "base3"])
    assert rc == 0, err
    assert out.startswith("MODELED, not measured")
    from mmfree import boards
    for what in ("kernel clock", "%.1f MHz" % boards.get("kv260")["clock_mhz"], "DDR peak", "GB/s", "DDR efficiency",
                 "0.85", "assumed", "driver time", "census", "reachable IIs"):
        assert what in out, (what, out)
    tps = re.search(r"decode\s+([\d.]+) tokens/s", out).group(1)
    r = subprocess.run([sys.executable, "-m", "mmfree.cycles"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    row = [ln for ln in r.stdout.splitlines() if ln.startswith("| kv260 | 1.3B | base3 |")]
    assert len(row) == 1 and row[0].split("|")[-3].strip() == tps, (tps, row)
    # the old spelling --project BOARD still works and gives the same figure
    rc, out2, _ = invoke(["bench", "--project", "kv260", "--size", "1.3B"])
    assert rc == 0 and f"decode                         {tps} tokens/s" in out2


def test_info_escapes_control_characters(packed_cache, tmp_path):
    """A file whose metadata `source` holds terminal escapes: `info` prints them escaped, never raw."""
    from mmfree.convert import convert
    hf_dir, _ = packed_cache("tiny", "base3")
    evil = tmp_path / "ck\x1b]0;owned\x07\x1b[2J"
    shutil.copytree(hf_dir, evil)
    out_path = tmp_path / "evil.safetensors"
    convert(str(evil), str(out_path), progress=False, log=None)
    rc, out, err = invoke(["info", "--model", str(out_path)])
    assert rc == 0, err
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b]0;owned\\x07\\x1b[2J" in out


def test_perplexity_leaves_no_files(tmp_path, monkeypatch):
    """A run on the shipped held-out text (2 short windows) cleans its temporary files and writes
    nothing beside the text; --cache-dir keeps the tokenized text where asked."""
    import tempfile
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.chdir(tmp_path)
    from mmfree.evaluate import HELDOUT_TEXT
    data_dir = os.path.dirname(HELDOUT_TEXT)
    before = sorted(os.listdir(data_dir))
    rc, out, err = invoke(["perplexity", "--max-windows", "2", "--seq-len", "64", "--json"])
    assert rc == 0, err
    import json
    r = json.loads(out)
    assert r["windows"] == 2 and r["tokens"] == 128 and 1 < r["perplexity"] < 4096
    assert os.listdir(tmp) == [] and sorted(os.listdir(data_dir)) == before
    cache = tmp_path / "cache"
    rc, out, err = invoke(["perplexity", "--max-windows", "2", "--seq-len", "64", "--json", "--cache-dir", str(cache)])
    assert rc == 0, err
    assert json.loads(out)["perplexity"] == r["perplexity"]
    assert len(os.listdir(cache)) == 2 and os.listdir(tmp) == []


def test_help_shows_defaults_and_every_flag_has_help():
    """Every option of every subcommand has help text; options with a default show it."""
    import argparse
    from mmfree.cli import build_parser
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        text = p.format_help()
        for a in p._actions:
            if a.help == argparse.SUPPRESS:
                continue
            assert a.help, (name, a.option_strings or a.dest)
            if a.option_strings and a.default not in (None, False, argparse.SUPPRESS) and not isinstance(
                    a, argparse._HelpAction):
                assert "default" in (a.help or "") or f"(default: {a.default}" in text, (name, a.option_strings)
    # one vocabulary: the same flag for the same thing
    for name in ("generate", "bench", "info", "perplexity"):
        assert "--model" in sub.choices[name].format_help(), name
    for name in ("generate", "bench"):
        h = sub.choices[name].format_help()
        assert "--max-new-tokens" in h and "--board" in h and "--backend" in h


def test_bench_project_plot_marks_the_requested_point(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "roof.png"
    rc, out, err = invoke(["bench", "--project", "--board", "zcu104", "--size", "370M", "--plot", str(png), "--json"])
    assert rc == 0, err
    import json
    r = json.loads(out)
    assert r["plot"] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert r["board"] == "zcu104" and r["size"] == "370M" and r["label"] == "modeled"
    assert set(r["assumptions"]) >= {"kernel clock", "DDR peak", "DDR efficiency", "driver time"}
