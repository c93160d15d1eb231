#!/usr/bin/env bash
# Board compatibility checks (`make board-compat`, run by .ci/run after `make test`):
#
#  1. install: a venv with the board images' own pip 22.0.2 and setuptools 59.6.0 (and wheel 0.37.1,
#     Ubuntu 22.04's python3-wheel) on Python 3.10 when this machine has it (the images' Python), else
#     the default python3 plus a Python 3.10 syntax check. The package installs
#       a) without build isolation (the venv's own setuptools 59.6.0), editable;
#       b) with the documented board command, exactly: python3 -m pip install -e ".[board]"
#          (build isolation: pip fetches a setuptools for the build from the index);
#       c) as a wheel built without isolation;
#     each time scripts/check_installed.py checks import, version, the console script and both pynq
#     entry points; a negative control (the old pyproject-only layout) must fail that check.
#  2. board-side tests under numpy 1.26 in that venv (driver, emulator, golden, packed, layout,
#     generate, board path), on packed models the host venv made (no torch on the board).
#  3. the driver against the real pynq package: pynq 3.0.1 and 4.0.0 from the index, each in its own
#     venv, the same driver tests through pynq's DefaultIP/MMIO/allocate (mmfree.emu_pynq).
#
# Venvs and pip's cache live in .cache/ (made once, reused); a fresh run downloads about 60 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
HOSTPY=${HOSTPY:-.venv/bin/python}
CACHE=$ROOT/.cache
export PIP_CACHE_DIR=$CACHE/pip PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_WARN_SCRIPT_LOCATION=1
FIX=$CACHE/board-fixtures
BOARD_TESTS="tests/test_driver.py tests/test_emu.py tests/test_golden.py tests/test_packed.py tests/test_generate.py tests/test_board_path.py"

say() { printf '\n== board-compat: %s\n' "$*"; }
quiet_pip() { "$@" 2>&1 | grep -v -e "^WARNING: Location" -e "^  WARNING: Location" || true; }

# a Python 3.10 (the board images' version), if this machine has one that runs
PY310=""
for p in python3.10 "$HOME"/.pyenv/versions/3.10*/bin/python3.10; do
  if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import sys, venv; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
    PY310=$p; break
  fi
done
BOARDPY=${PY310:-python3}

say "packed test models from the host venv ($FIX)"
"$HOSTPY" tests/conftest.py "$FIX" >/dev/null

# ---------------------------------------------------------------------------------------------------
V=$CACHE/venv-board
if [ ! -f "$V/.ok" ]; then
  say "making $V: $("$BOARDPY" --version), pip 22.0.2, setuptools 59.6.0, wheel 0.37.1, numpy 1.26.4"
  rm -rf "$V"
  "$BOARDPY" -m venv "$V"
  quiet_pip "$V/bin/python" -m pip install -q pip==22.0.2
  quiet_pip "$V/bin/python" -m pip install -q setuptools==59.6.0 wheel==0.37.1
  # what the pynq venv already holds: numpy 1.26.4 (Kria-PYNQ pins it; PYNQ v3.1 pins numpy<2)
  quiet_pip "$V/bin/python" -m pip install -q numpy==1.26.4 pytest==9.2.0
  touch "$V/.ok"
fi
"$V/bin/python" - <<'EOF'
import sys, pip, setuptools
print("board venv: Python %s, pip %s, setuptools %s" % (sys.version.split()[0], pip.__version__, setuptools.__version__))
assert pip.__version__ == "22.0.2" and setuptools.__version__ == "59.6.0", "the board venv drifted: rm -r .cache/venv-board"
EOF

say "install a) --no-build-isolation --no-deps -e . (the venv's setuptools 59.6.0)"
quiet_pip "$V/bin/python" -m pip uninstall -y -q mmfree
quiet_pip "$V/bin/python" -m pip install -q --no-build-isolation --no-deps -e .
(cd /tmp && "$V/bin/python" "$ROOT/scripts/check_installed.py" "$ROOT" --editable)

say "negative control: a pyproject-only package (the old layout) installs as UNKNOWN and the check fails"
NEG=$(mktemp -d)
cp -r python "$NEG/python"
printf '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n[project]\nname = "mmfree"\nversion = "0.1.0"\n\n[project.scripts]\nmmfree = "mmfree.cli:main"\n\n[tool.setuptools.packages.find]\nwhere = ["python"]\n' > "$NEG/pyproject.toml"
quiet_pip "$V/bin/python" -m pip uninstall -y -q mmfree
(cd "$NEG" && quiet_pip "$V/bin/python" -m pip install -q --no-build-isolation --no-deps -e .)
if (cd /tmp && "$V/bin/python" "$ROOT/scripts/check_installed.py" "$NEG" --editable 2>&1); then
  echo "board-compat: the negative control installed correctly: setuptools 59.6.0 read [project]?" >&2; exit 1
fi
quiet_pip "$V/bin/python" -m pip uninstall -y -q UNKNOWN
rm -rf "$NEG"

say 'install b) the documented board command: python3 -m pip install -e ".[board]"'
quiet_pip "$V/bin/python" -m pip uninstall -y -q mmfree
( . "$V/bin/activate" && quiet_pip python3 -m pip install -q -e ".[board]" )
(cd /tmp && "$V/bin/python" "$ROOT/scripts/check_installed.py" "$ROOT" --editable --board)

say "install c) a wheel built without isolation"
W=$(mktemp -d)
quiet_pip "$V/bin/python" -m pip wheel -q --no-build-isolation --no-deps -w "$W" .
"$V/bin/python" - "$W" <<'EOF'
import glob, sys, zipfile
whl = glob.glob(sys.argv[1] + "/*.whl")
assert [w.rsplit("/", 1)[1] for w in whl] == ["mmfree-0.1.0-py3-none-any.whl"], whl
z = zipfile.ZipFile(whl[0])
names = set(z.namelist())
for need in ("mmfree/driver.py", "mmfree/data/boards.json", "mmfree/overlays/manifest.json",
             "mmfree/notebooks/01-quickstart.ipynb", "mmfree-0.1.0.dist-info/entry_points.txt"):
    assert need in names, need
ep = z.read("mmfree-0.1.0.dist-info/entry_points.txt").decode()
assert "[pynq.overlays]" in ep and "[pynq.notebooks]" in ep and "mmfree = mmfree.cli:main" in ep, ep
print("wheel ok: %s (%d files, entry points %s)" % (whl[0].rsplit("/", 1)[1], len(names),
      ", ".join(l.strip("[]") for l in ep.split() if l.startswith("["))))
EOF
rm -rf "$W"

if [ -n "$PY310" ]; then
  say "python/ compiles under $("$V/bin/python" --version)"
  "$V/bin/python" -m compileall -q -f python/mmfree scripts tests >/dev/null
fi

say "board-side tests under numpy $("$V/bin/python" -c 'import numpy; print(numpy.__version__)') ($("$V/bin/python" --version))"
MMFREE_PYNQ=0 MMFREE_TEST_PACKED_DIR=$FIX "$V/bin/python" -m pytest -q -p no:cacheprovider $BOARD_TESTS

# ---------------------------------------------------------------------------------------------------
for PYNQV in 3.0.1 4.0.0; do
  P=$CACHE/venv-pynq-$PYNQV
  PPY=python3
  [ "$PYNQV" = 3.0.1 ] && [ -n "$PY310" ] && PPY=$PY310   # Kria-PYNQ: pynq 3.0.1 on Python 3.10
  if [ ! -f "$P/.ok" ]; then
    say "making $P: pynq==$PYNQV from the package index ($("$PPY" --version))"
    rm -rf "$P"
    "$PPY" -m venv "$P"
    quiet_pip "$P/bin/python" -m pip install -q "pynq==$PYNQV" pytest==9.2.0 tokenizers
    touch "$P/.ok"
  fi
  say "driver tests through pynq $("$P/bin/python" -c 'import pynq; print(pynq.__version__)') (numpy $("$P/bin/python" -c 'import numpy; print(numpy.__version__)')): DefaultIP, MMIO, allocate"
  PYTHONPATH=$ROOT/python MMFREE_PYNQ=1 MMFREE_EMU_VIA_PYNQ=1 MMFREE_TEST_PACKED_DIR=$FIX \
    "$P/bin/python" -m pytest -q -p no:cacheprovider -W error::pytest.PytestUnraisableExceptionWarning \
    tests/test_driver.py tests/test_emu.py tests/test_board_path.py tests/test_generate.py
done
say "all passed"
