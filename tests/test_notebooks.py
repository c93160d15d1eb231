"""The board notebooks (python/mmfree/notebooks/*.ipynb, linked from notebooks/) run headless in
emulation with nbclient, each shows at least one plot, and the copies in git carry no outputs.

The C-sim library is built first with `make csim` (the emulator runs it); a kernelspec for this
interpreter is installed into a temporary JUPYTER_PATH so the notebooks run in this venv.
"""

import glob
import json
import os
import subprocess
import sys
import time

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG_NB = os.path.join(ROOT, "python", "mmfree", "notebooks")
NOTEBOOKS = sorted(glob.glob(os.path.join(PKG_NB, "*.ipynb")))
EXPECTED = ["01-quickstart.ipynb", "02-power.ipynb", "03-verification.ipynb", "04-performance.ipynb"]
KERNEL = "mmfree-test-python3"


def test_notebook_set_and_links():
    assert [os.path.basename(p) for p in NOTEBOOKS] == EXPECTED
    # notebooks/ is the documented location: links to the packaged copies (the single source)
    for name in EXPECTED:
        link = os.path.join(ROOT, "notebooks", name)
        assert os.path.islink(link), f"notebooks/{name} should link to python/mmfree/notebooks/{name}"
        assert os.path.samefile(link, os.path.join(PKG_NB, name))
    # `pynq get-notebooks` copies the folder of the `pynq.notebooks` entry point's module
    import mmfree.notebooks as m
    assert os.path.samefile(list(m.__path__)[0], PKG_NB)
    import configparser
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"), encoding="utf-8")     # the package metadata (setup.cfg)
    assert cfg["options.entry_points"]["pynq.notebooks"].split() == ["mmfree", "=", "mmfree.notebooks"]
    assert "notebooks/*.ipynb" in cfg["options.package_data"]["mmfree"].split()


def _check_clean(nb, where):
    for i, c in enumerate(nb.cells):
        if c.cell_type != "code":
            continue
        assert c.get("outputs") == [], f"{where}: cell {i} has outputs (strip them before committing)"
        assert c.get("execution_count") is None, f"{where}: cell {i} has an execution_count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_has_no_outputs(path):
    _check_clean(nbformat.read(path, as_version=4), path)
    rel = os.path.relpath(path, ROOT)
    try:
        staged = subprocess.run(["git", "show", f":{rel}"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return
    if staged.returncode == 0:  # the copy in the git index (what a commit records)
        _check_clean(nbformat.reads(staged.stdout, as_version=4), f"git index {rel}")


@pytest.fixture(scope="module")
def emu_env(tmp_path_factory):
    """make csim, a model for default_model(), and a kernelspec of this interpreter."""
    r = subprocess.run(["make", "csim"], cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"`make csim` failed (the emulator needs the C-sim library):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    from mmfree.errors import ConfigError
    from mmfree import generate
    try:
        generate.default_model()
    except ConfigError:  # neither the bundled model nor the demo model: build the demo model (`make demo` does)
        generate.make_random_model(generate.DEMO_MODEL)
    prefix = tmp_path_factory.mktemp("jupyter")
    r = subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", KERNEL],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    jpath = os.path.join(str(prefix), "share", "jupyter")
    spec = json.load(open(os.path.join(jpath, "kernels", KERNEL, "kernel.json")))
    assert spec["argv"][0] == sys.executable
    env = {"JUPYTER_PATH": jpath, "MMFREE_BOARD": None, "BOARD": None, "MMFREE_PYNQ": "0",
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
           "MPLBACKEND": None}
    return env


def _run(path, env, monkeypatch, tmp_path, extra=None):
    for k, v in dict(env, **(extra or {})).items():
        if v is None:
            monkeypatch.delenv(k, raising=False)
        else:
            monkeypatch.setenv(k, v)
    nb = nbformat.read(path, as_version=4)
    t = time.perf_counter()
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name=KERNEL,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    return nb, time.perf_counter() - t


def _outputs(nb):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs_in_emulation(path, emu_env, monkeypatch, tmp_path):
    nb, secs = _run(path, emu_env, monkeypatch, tmp_path)
    outs = _outputs(nb)
    assert not [o for o in outs if o.output_type == "error"]
    pngs = [o for o in outs if "image/png" in o.get("data", {})]
    assert pngs, f"{os.path.basename(path)} produced no plot"
    text = "".join(o.get("text", "") for o in outs if o.output_type == "stream")
    assert "in emulation" in text, "the notebook should say it runs in emulation"
    print(f"{os.path.basename(path)}: {secs:.1f} s, {len(pngs)} plots")


def test_power_notebook_with_a_sensor(emu_env, monkeypatch, tmp_path):
    """The measurement branch of 02-power, with a fake KV260 INA260 hwmon (constant 5 W)."""
    hw = tmp_path / "hwmon" / "hwmon3"
    hw.mkdir(parents=True)
    (hw / "name").write_text("ina260_u14\n")
    (hw / "power1_input").write_text("5000000\n")
    nb, _ = _run(os.path.join(PKG_NB, "02-power.ipynb"), emu_env, monkeypatch, tmp_path,
                 {"MMFREE_HWMON_ROOT": str(tmp_path / "hwmon"), "MMFREE_NOTEBOOK_QUICK": "1"})
    outs = _outputs(nb)
    text = "".join(o.get("text", "") for o in outs if o.output_type == "stream")
    assert "measured here (hwmon:ina260_u14)" in text
    assert "no projection needed" in text
    assert len([o for o in outs if "image/png" in o.get("data", {})]) >= 2


def test_notebook_takes_the_model_from_mmfree_model(emu_env, monkeypatch, tmp_path):
    """MMFREE_MODEL points the notebooks at another packed model (a converted one on a board) with no
    cell edited: 01 must load and report that file, not the bundled model."""
    from mmfree.generate import make_random_model
    other = make_random_model(str(tmp_path / "other.safetensors"),
                              dict(vocab_size=300, hidden_size=32, num_hidden_layers=1, intermediate_size=64))
    nb, _ = _run(os.path.join(PKG_NB, "01-quickstart.ipynb"), emu_env, monkeypatch, tmp_path,
                 {"MMFREE_MODEL": other})
    text = "".join(o.get("text", "") for o in _outputs(nb) if o.output_type == "stream")
    assert f"Model: {other}" in text and "d=32, layers=1" in text, text[-2000:]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_model_parameter(path):
    """One parameter cell (tagged 'parameters') holds MODEL_PATH; the model is never hard-coded."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []) and "MODEL_PATH = None" in code[0].source
    setup = code[1].source
    assert 'MODEL = MODEL_PATH or os.environ.get("MMFREE_MODEL") or default_model(' in setup
    assert "bundled.safetensors" not in "".join(c.source for c in code)
