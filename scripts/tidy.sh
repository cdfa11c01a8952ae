#!/usr/bin/env bash
# clang-tidy over the C++ core (the checks in .clang-tidy; every finding fails). Configures the
# `tidy` preset for its compile database, then checks each core source file with both cores.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
command -v run-clang-tidy >/dev/null || {
  echo "clang-tidy is missing: run scripts/install-deps.sh" >&2
  exit 2
}
cmake --preset tidy >/dev/null
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# GCC's warning flags in the compile database mean nothing to clang: not findings.
run-clang-tidy -p build/tidy -j "$(nproc)" -quiet -extra-arg=-Wno-unknown-warning-option \
  "$repo/core/src/" >"$log" 2>&1 || status=$?
# The findings, without the tool's progress lines and colours.
sed 's/\x1b\[[0-9;]*m//g' "$log" |
  grep -v -E '^(clang-tidy|[0-9]+ warnings? generated|Suppressed [0-9]+ warnings|Use -header-filter|Running clang-tidy|Enabled checks)' || true
if [ "$status" != 0 ]; then
  echo "clang-tidy: findings above (checks in .clang-tidy); fix them" >&2
  exit 1
fi
echo "clang-tidy: the core is clean ($(grep -c '^clang-tidy' "$log") files)"
