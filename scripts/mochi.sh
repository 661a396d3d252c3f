# Sourced by setup.sh and test.sh: puts the Mochi stack (Thallium) on the build's paths.
# MOCHI_ENV=/path/env.sh uses an existing install (Spack: its env, or a prefix's env.sh);
# otherwise ../shared/mochi/build.sh builds it from the project's source archives once
# (cached in ~/.cache/reverie/mochi-<hash>; 1-2 min on 2 cores) and prints its prefix.
# Without either, Reverie builds without the Thallium engine, except in CI (CI=true), where
# that is an error: CI must test both engines.
mochi_build=../shared/mochi/build.sh
if [ -n "${MOCHI_ENV:-}" ]; then
  . "$MOCHI_ENV"
elif [ -f "$mochi_build" ]; then
  mochi_prefix=$(bash "$mochi_build" | tail -n 1)
  . "$mochi_prefix/env.sh"
elif [ "${CI:-}" = true ]; then
  echo "error: CI needs Thallium, but neither MOCHI_ENV nor $mochi_build is there" >&2
  exit 1
else
  echo "note: no Mochi found (MOCHI_ENV, $mochi_build): building without the Thallium engine" >&2
fi
