#!/usr/bin/env bash
# The README's main job: set up a fresh machine, then compare incremental training,
# retraining from scratch and rehearsal with Reverie on 2 ranks (digits, 5 tasks).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export OMP_NUM_THREADS=1
reverie compare "$@"
