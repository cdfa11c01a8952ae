#!/usr/bin/env bash
# The main job: installs what is missing, builds and installs postroom into .venv, then runs
# the demo pipeline on the embedded broker (produce CloudEvents, consume them back).
# Safe to rerun. Extra arguments go to `postroom demo` (e.g. --events 100 --json).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
scripts/install-deps.sh --demo
scripts/install-package.sh
exec .venv/bin/postroom demo "$@"
