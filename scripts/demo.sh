#!/usr/bin/env bash
# The README's main job: set up a fresh machine, then compare incremental training,
# retraining from scratch and rehearsal with Reverie on 2 ranks (reverie compare's defaults:
# MNIST-1D, class-incremental, 5 tasks of 2 classes). Extra arguments go to reverie compare,
# e.g. `bash scripts/demo.sh --dataset digits`.
set -euo pipefail
cd "$(dirname "$0")/.."
REVERIE_OMPI=${REVERIE_OMPI:-0} bash scripts/setup.sh  # the demo needs no second MPI
. .venv/bin/activate
export OMP_NUM_THREADS=1
reverie compare "$@"
