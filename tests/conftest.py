"""Shared fixtures: small random checkpoints in the released format and their packed files."""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "python"))

# Shapes exercised everywhere: d not a power of two, vocab not a multiple of 64, 1-4 layers.
SHAPES = {
    "tiny": dict(vocab_size=101, hidden_size=48, num_hidden_layers=1, intermediate_size=128),
    "odd": dict(vocab_size=301, hidden_size=200, num_hidden_layers=3, intermediate_size=544),
    "wide": dict(vocab_size=515, hidden_size=96, num_hidden_layers=4, intermediate_size=256),
}


def make_checkpoint(folder, shape="odd", dtype="bfloat16", seed=0, shards=None, dtype_key="torch_dtype",
                    std=0.02):
    """Write a random HGRNBit checkpoint in the released format with mmfree.model.save_pretrained."""
    import torch
    from mmfree.config import HGRNBitConfig
    from mmfree.model import HGRNBit

    cfg = HGRNBitConfig(**SHAPES[shape]) if isinstance(shape, str) else HGRNBitConfig(**shape)
    torch.manual_seed(seed)
    m = HGRNBit(cfg)
    m.reset_parameters(std)
    with torch.no_grad():
        m.model.lower_bounds.normal_()
        for name, p in m.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    tdtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]
    m.save_pretrained(str(folder), dtype=tdtype, max_shard_bytes=shards, dtype_key=dtype_key)
    return str(folder)


def make_packed(tmp_path, shape="odd", packing="base3", seed=0, **kw):
    """(checkpoint folder, packed file) for a random model."""
    from mmfree.convert import convert

    ck = make_checkpoint(tmp_path / f"hf-{shape}-{seed}", shape=shape, seed=seed, **kw)
    out = str(tmp_path / f"{shape}-{seed}-{packing}.safetensors")
    convert(ck, out, packing=packing, progress=False, log=None)
    return ck, out


# Board-side test runs (numpy 1.x, the pynq package) have no torch to make checkpoints: they read the
# packed files the host venv wrote with `tests/conftest.py FOLDER` (make board-compat) from this folder.
PREMADE = os.environ.get("MMFREE_TEST_PACKED_DIR")
PREMADE_KEYS = [(shape, packing, 0) for shape in SHAPES for packing in ("base3", "2bit")]


@pytest.fixture(scope="session")
def packed_cache(tmp_path_factory):
    """Session cache of packed models: packed_cache(shape, packing) -> (hf_dir, packed_path); with
    $MMFREE_TEST_PACKED_DIR, (None, premade packed file)."""
    cache = {}
    base = tmp_path_factory.mktemp("packed")

    def get(shape="odd", packing="base3", seed=0):
        key = (shape, packing, seed)
        if key not in cache:
            if PREMADE:
                path = os.path.join(PREMADE, f"{shape}-{seed}-{packing}.safetensors")
                if not os.path.exists(path):
                    pytest.fail(f"{path} missing: make it with the host venv (python tests/conftest.py {PREMADE})")
                cache[key] = (None, path)
            else:
                cache[key] = make_packed(base, shape, packing, seed)
        return cache[key]

    return get


def build_csim(board="kv260"):
    """`make csim` for a board (a no-op when up to date); fails the test with the build error, never skips."""
    r = subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "hls"), "csim", f"BOARD={board}",
                        f"PY={sys.executable}"], capture_output=True, text=True)
    if r.returncode:
        pytest.fail(f"make csim BOARD={board} failed:\n" + r.stdout[-4000:] + r.stderr[-4000:])


@pytest.fixture(scope="session")
def csim_lib():
    """The C-simulation library of the kv260 build, built first."""
    build_csim("kv260")
    from mmfree import csim
    return csim.load("kv260")


if __name__ == "__main__":  # python tests/conftest.py FOLDER: the packed files board-side runs read
    import pathlib
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for shape, packing, seed in PREMADE_KEYS:
        target = out / f"{shape}-{seed}-{packing}.safetensors"
        if not target.exists():
            _, made = make_packed(out, shape, packing, seed)
            os.replace(made, target)
    print(f"packed test models in {out}")
