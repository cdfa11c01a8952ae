#!/usr/bin/env bash
# Runs every test tier against real services: installs what is missing, starts Kafka (KRaft),
# Redis and PostgreSQL, builds the C++ core, GUI and tests (normal and ASan+UBSan), then runs
# ctest (unit, contract, kafka, gui) and pytest (unit, contract, kafka, notebooks).
# Safe to rerun. Services this script started are stopped at the end
# (POSTROOM_KEEP_SERVICES=1 keeps them).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
step() { printf '\n==> %s\n' "$*"; }

step "dependencies"
scripts/install-deps.sh

step "services"
already_running=$(scripts/services.sh status | grep -c running || true)
scripts/services.sh start
eval "$(scripts/services.sh env)"
if [ "${POSTROOM_KEEP_SERVICES:-0}" != "1" ] && [ "$already_running" = "0" ]; then
  trap 'scripts/services.sh stop >/dev/null 2>&1 || true' EXIT
fi

step "C++ build (RelWithDebInfo, warnings are errors)"
cmake --preset default >/dev/null
cmake --build --preset default

step "ctest: unit, contract (embedded broker), kafka (real broker), gui"
ctest --preset default --timeout 300 -j2

step "C++ build with AddressSanitizer + UndefinedBehaviorSanitizer"
cmake --preset asan >/dev/null
cmake --build --preset asan

step "ctest under ASan+UBSan: unit and contract"
ctest --preset asan -L "unit|contract" --timeout 300 -j2

step "Python package"
scripts/install-package.sh

step "lint: clang-format, ruff, mypy --strict, stubtest of the extension's stubs"
git ls-files -z -- '*.cpp' '*.hpp' '*.h' | xargs -0 clang-format --dry-run --Werror
.venv/bin/ruff check python/postroom tests/python bench
.venv/bin/mypy
.venv/bin/python -m mypy.stubtest postroom._core --allowlist python/stubtest-allowlist.txt

step "pytest: unit, contract, kafka, notebooks"
QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest tests/python -p no:cacheprovider
