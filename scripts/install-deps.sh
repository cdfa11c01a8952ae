#!/usr/bin/env bash
# Installs what postroom needs on a fresh Debian 12 machine: Debian packages, Python packages
# and the Apache Kafka broker jars (from Maven Central, cached under .cache/kafka).
# Idempotent: every step checks first and does only what is missing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { printf '[install-deps] %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

debian_packages=(
  build-essential cmake ninja-build pkg-config git
  librdkafka-dev libhiredis-dev nlohmann-json3-dev libsqlite3-dev libpq-dev
  libgtest-dev libgmock-dev
  qt6-base-dev qt6-base-dev-tools libgl-dev
  redis-server postgresql postgresql-contrib
  openjdk-17-jre-headless maven
  python3-dev
)

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

PYTHON="${PYTHON:-python3}"
python_packages=(
  "pybind11>=2.11" "scikit-build-core>=0.8" "pytest>=7" "pytest-timeout" "hypothesis"
  "confluent-kafka>=2.6" "cloudevents>=1.10,<2" "redis>=5" "psycopg[binary]>=3.1"
  "click>=8" "rich>=13" "nbclient" "nbformat" "ipykernel" "mypy" "ruff"
)
if ! "$PYTHON" - <<'PY' >/dev/null 2>&1
import importlib, sys
for m in ["pybind11", "scikit_build_core", "pytest", "pytest_timeout", "hypothesis",
          "confluent_kafka", "cloudevents", "redis", "psycopg", "click", "rich",
          "nbclient", "nbformat", "ipykernel", "mypy", "ruff"]:
    importlib.import_module(m)
PY
then
  log "installing Python packages"
  "$PYTHON" -m pip install -q --disable-pip-version-check "${python_packages[@]}"
else
  log "Python packages: all present"
fi

"$here/scripts/fetch-kafka.sh"
log "done"
