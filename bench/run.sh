#!/usr/bin/env bash
# The produce benchmark in one command: installs what is missing, starts Kafka, (re)installs
# the postroom Python package, builds the native tool, runs bench/produce.py. Safe to rerun;
# Kafka is left running.
#
#   bench/run.sh                                # defaults: 300000 messages, 3 repeats
#   bench/run.sh --messages 100000 --repeat 5   # any bench/produce.py argument passes through
#
# Python: $PYTHON if set; else the project's .venv (made by scripts/install-deps.sh); else
# python3. Env:
#   POSTROOM_BENCH_SKIP_DEPS=1   do not run scripts/install-deps.sh
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
build_dir="build/bench"                         # relative to the repository root
native="$build_dir/bench/postroom_bench_produce"
log() { printf '[bench/run.sh] %s\n' "$*" >&2; }

# 1. Dependencies (Debian packages, .venv with confluent-kafka and rich, Kafka jars)
if [ "${POSTROOM_BENCH_SKIP_DEPS:-0}" != "1" ] && [ -x scripts/install-deps.sh ]; then
  log "checking dependencies (scripts/install-deps.sh)"
  scripts/install-deps.sh
fi
if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"
elif [ -x .venv/bin/python ]; then PY="$repo/.venv/bin/python"
else PY=python3
fi
if ! "$PY" -c 'import confluent_kafka, rich, pybind11, scikit_build_core' >/dev/null 2>&1; then
  log "installing Python packages for the benchmark into $PY's environment"
  "$PY" -m pip install -q --disable-pip-version-check "confluent-kafka>=2.6" "rich>=13" \
    "pybind11>=2.11" "scikit-build-core>=0.8"
fi

# 2. Kafka
scripts/services.sh start kafka
eval "$(scripts/services.sh env)"
log "broker: $POSTROOM_KAFKA_URL"

# 3. The postroom Python package, built from this checkout
imports() { "$PY" -c 'import postroom._core' >/dev/null 2>&1; }
install_postroom() {
  if [ "$PY" = "$repo/.venv/bin/python" ] && [ -x scripts/install-package.sh ]; then
    scripts/install-package.sh              # rebuilds only when the sources changed
  else
    log "installing the postroom Python package from this checkout with $PY (pip, ~30 s)"
    CMAKE_BUILD_PARALLEL_LEVEL=2 "$PY" -m pip install --no-build-isolation -q \
      --disable-pip-version-check .
  fi
}
install_postroom || true
if ! imports; then  # a concurrent rebuild may have interfered: force a clean reinstall once
  log "import postroom failed; reinstalling"
  rm -f .venv/postroom-sources.sha256
  install_postroom
  imports || { log "ERROR: cannot import postroom after installing it"; exit 1; }
fi

# 4. The native tool (incremental: a no-op when up to date)
configure() {
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DPOSTROOM_BUILD_BENCH=ON -DPOSTROOM_BUILD_TESTS=OFF >/dev/null
}
build_native() {
  [ -f "$build_dir/CMakeCache.txt" ] || configure
  cmake --build "$build_dir" --target postroom_bench_produce -j2 >/dev/null
}
log "building $native"
if ! build_native; then
  log "build failed; reconfiguring $build_dir from scratch"
  rm -rf "$build_dir"
  build_native
fi

# 5. The benchmark (arguments after ours win)
exec "$PY" bench/produce.py --broker "$POSTROOM_KAFKA_URL" --native "$native" "$@"
