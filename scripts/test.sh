#!/usr/bin/env bash
# Runs the whole test suite in the venv made by scripts/setup.sh: C++ unit tests (plain,
# ASan+UBSan, TSan), lint, then pytest (unit, statistical, multi-rank under mpiexec,
# fault, packaging, experiments, Avalanche integration); then, in .venv-ompi (Open MPI 5, from
# scripts/setup.sh), the multi-rank conformance subset: tests/mpi, tests/reliability and
# tests/loader on the MPI engine, less the benchmark smoke tests that never branch on the
# MPI library (~4.5 min on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
. scripts/mochi.sh
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# Each phase prints the seconds since the start: where CI time goes (aim: under 15 min).
phase() { echo "== $* (at ${SECONDS}s)"; }
if [ "${CI:-}" = true ]; then  # CI runs every engine test on both engines: none may skip for a missing build
  python -c "import reverie._core as c, sys; sys.exit(0 if c.HAVE_MPI and c.HAVE_THALLIUM else 'CI: Reverie was built without MPI or Thallium')"
  # The Avalanche plugin's tests skip where Avalanche is absent; in CI they must run.
  python -c "import reverie.integrations.avalanche" 2>/dev/null ||
    { echo "CI: reverie.integrations.avalanche does not import (pip install -c <(echo torch==2.13.0) '.[avalanche]')"; exit 1; }
fi

# The sanitizer builds leave the MPI engine out: MPICH's UCX memory hooks (libucm) wrap
# madvise, which crashes ThreadSanitizer's own thread start-up. The engine is exercised by
# the multi-rank tests instead.
for variant in plain:"":AUTO asan:"address,undefined":OFF tsan:"thread":OFF; do
  IFS=: read -r name sanitize mpi <<<"$variant"
  phase "C++ tests ($name)"
  cmake -S . -B "build/cpp-$name" -G Ninja -DREVERIE_BUILD_TESTS=ON -DREVERIE_BUILD_PYTHON=OFF \
    -DCMAKE_BUILD_TYPE=Debug -DREVERIE_SANITIZE="$sanitize" -DREVERIE_MPI="$mpi" -DREVERIE_THALLIUM=OFF >/dev/null
  cmake --build "build/cpp-$name" -j2 >/dev/null
  TSAN_OPTIONS="halt_on_error=1" ASAN_OPTIONS="detect_leaks=1" \
    ctest --test-dir "build/cpp-$name" --output-on-failure --timeout 300 -j2 | tail -n 3
done

phase "fuzz: request decoder and checkpoint restore (libFuzzer + ASan/UBSan, bounded, side by side)"
clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -Icpp \
  tests/fuzz/wire_request_fuzz.cc cpp/transport/wire_format.cc -o build/wire_request_fuzz
clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -Icpp tests/fuzz/checkpoint_restore_fuzz.cc \
  cpp/buffer/local_buffer.cc cpp/policy/reservoir_policy.cc cpp/store/slot_arena.cc cpp/sampling/uniform_subset.cc \
  -o build/checkpoint_restore_fuzz
# Each fuzzer is one thread: both run at once, one per core, for the same bounded time.
fuzz() {  # fuzzer name, then its arguments; its output goes to build/<name>.log
  local name=$1
  shift
  "build/$name" -max_total_time="${REVERIE_FUZZ_SECONDS:-30}" -print_final_stats=1 "$@" >"build/$name.log" 2>&1
}
request_corpus=$(mktemp -d)
restore_corpus=$(mktemp -d)
cp tests/fuzz/corpus/* "$request_corpus"/
fuzz wire_request_fuzz "$request_corpus" &
request_fuzz=$!
fuzz checkpoint_restore_fuzz -seed=1 "$restore_corpus" &
restore_fuzz=$!
fuzz_failed=0
for job in "wire_request_fuzz:$request_fuzz" "checkpoint_restore_fuzz:$restore_fuzz"; do
  name=${job%%:*}
  if wait "${job#*:}"; then
    echo "$name:" $(grep -E 'number_of_executed_units|peak_rss_mb' "build/$name.log")
  else
    fuzz_failed=1
    echo "$name FAILED:" && tail -n 60 "build/$name.log"
  fi
done
rm -rf "$request_corpus" "$restore_corpus"
[ "$fuzz_failed" = 0 ]

phase "ruff"
ruff check python tests benchmarks examples backend
ruff format --check python tests benchmarks examples backend

phase "pytest"
python -m pytest -q -p no:cacheprovider --durations=15 tests

phase "pytest, second MPI (Open MPI 5, .venv-ompi): multi-rank conformance subset, MPI engine"
if [ -x .venv-ompi/bin/python ]; then
  .venv-ompi/bin/python -c "import reverie._core as c, sys; sys.exit(0 if c.HAVE_MPI else 'Reverie in .venv-ompi was built without MPI')"
  # Benchmark smoke tests whose code never branches on the MPI library run once, above
  # (marker first_mpi_only); remote_fetch.py's launcher and floor program, which do, run here.
  .venv-ompi/bin/python -m pytest -q -p no:cacheprovider --durations=10 -k "not thallium" -m "not first_mpi_only" \
    tests/mpi tests/reliability tests/loader
elif [ "${CI:-}" = true ]; then
  echo "error: CI needs the second MPI: .venv-ompi is missing (scripts/setup.sh)" >&2
  exit 1
else
  echo "note: no .venv-ompi (REVERIE_OMPI=0 at setup): second MPI not tested" >&2
fi
phase "done"
