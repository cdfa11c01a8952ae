#!/usr/bin/env bash
# Installs what postroom needs on a fresh Debian 12 machine: Debian packages, a Python virtual
# environment (.venv) with the Python packages, and the Apache Kafka broker jars (from Maven
# Central, cached under .cache/kafka).
# Idempotent: every step checks first and does only what is missing.
#
# Usage: scripts/install-deps.sh [--demo]
#   --demo   only what the demo needs (compiler, librdkafka, Python); no services, GUI or Kafka
set -euo pipefail
profile="test"
if [ "${1:-}" = "--demo" ]; then profile="demo"; fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { printf '[install-deps] %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

debian_packages=(
  build-essential cmake ninja-build pkg-config git
  librdkafka-dev libhiredis-dev nlohmann-json3-dev libsimdjson-dev libsqlite3-dev libpq-dev
  python3-dev python3-venv
)
if [ "$profile" = "test" ]; then
  debian_packages+=(
    libgtest-dev libgmock-dev clang-format clang-tidy
    qt6-base-dev qt6-base-dev-tools libgl-dev
    redis-server postgresql postgresql-contrib
    openjdk-17-jre-headless maven
  )
fi

missing=()
for p in "${debian_packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  log "Debian packages: all present"
fi

# The Debian postgresql package starts a cluster on 5432 that tests never use; leave it alone.

# Python packages go into the project's own virtual environment, never the system Python.
BASE_PYTHON="${PYTHON:-python3}"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  log "creating the virtual environment .venv"
  "$BASE_PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
fi
PY="$venv/bin/python"

python_packages=("pybind11>=2.11" "scikit-build-core>=0.8" "click>=8" "rich>=13")
python_modules=(pybind11 scikit_build_core click rich)
if [ "$profile" = "test" ]; then
  python_packages+=(
    "pytest>=7" "pytest-timeout" "hypothesis" "confluent-kafka>=2.6" "cloudevents>=1.10,<2"
    "redis>=5" "hiredis>=2" "psycopg[binary]>=3.1" "nbclient" "nbformat" "ipykernel" "pandas" "mypy" "ruff"
    "sqlalchemy>=2"
  )
  python_modules+=(pytest pytest_timeout hypothesis confluent_kafka cloudevents redis hiredis
                   psycopg nbclient nbformat ipykernel pandas mypy ruff sqlalchemy)
fi
if ! "$PY" -c "import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]" \
     "${python_modules[@]}" >/dev/null 2>&1; then
  log "installing Python packages into .venv"
  "$PY" -m pip install -q --disable-pip-version-check "${python_packages[@]}"
else
  log "Python packages: all present in .venv"
fi

if [ "$profile" = "test" ]; then
  "$here/scripts/fetch-kafka.sh"
fi
log "done"
