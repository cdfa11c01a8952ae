#!/usr/bin/env bash
# Builds the postroom Python package (C++ core + pybind11 extension) and installs it into
# .venv. Skipped when the installed build matches the current sources.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
PY=.venv/bin/python
stamp=".venv/postroom-sources.sha256"
digest=$(find CMakeLists.txt pyproject.toml core python -type f \( -name '*.cpp' -o -name '*.hpp' \
           -o -name '*.py' -o -name '*.txt' -o -name '*.toml' -o -name '*.pyi' \) -print0 \
         | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ] && "$PY" -c "import postroom._core" 2>/dev/null; then
  echo "[install-package] postroom is up to date in .venv"
  exit 0
fi
echo "[install-package] building and installing postroom into .venv (C++ core, about a minute)"
CMAKE_BUILD_PARALLEL_LEVEL=2 "$PY" -m pip install -q --disable-pip-version-check --no-build-isolation .
echo "$digest" > "$stamp"
