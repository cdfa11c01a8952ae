#!/usr/bin/env bash
# Regenerates python/postroom/_core.pyi from the built extension (pybind11-stubgen), then
# tightens the types pybind11 cannot know (bytes | None, str | None, ...). Run after changing
# the bindings; the test suite checks the stubs against the module with mypy's stubtest.
#   scripts/generate-stubs.sh            # uses the postroom installed in .venv
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
PY="${PYTHON:-.venv/bin/python}"
"$PY" -c "import pybind11_stubgen" 2>/dev/null || "$PY" -m pip install -q pybind11-stubgen
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
("$PY" -m pybind11_stubgen postroom._core -o "$out" >/dev/null)
"$PY" - "$out/postroom/_core.pyi" python/postroom/_core.pyi <<'PY'
import re
import sys

source, target = sys.argv[1:3]
s = open(source).read()
for name in ["data", "key", "value"]:
    s = re.sub(rf"(def {name}\(self\) -> )typing\.Any", r"\1bytes | None", s)
for name in ["datacontenttype", "dataschema", "subject", "time", "text", "error"]:
    s = re.sub(rf"(def {name}\(self\) -> )typing\.Any", r"\1str | None", s)
replacements = {
    "def retriable(self) -> typing.Any": "def retriable(self) -> bool | None",
    "def header(self, name: str) -> typing.Any": "def header(self, name: str) -> bytes | None",
    "def headers(self) -> list:": "def headers(self) -> list[tuple[str, bytes | None]]:",
    "def failures(self) -> list:": "def failures(self) -> list[tuple[int, DeliveryReport]]:",
    "def assignment(self) -> list:": "def assignment(self) -> list[tuple[str, int]]:",
    "def commit(self) -> list:": "def commit(self) -> list[tuple[str, int, int]]:",
    "def counters(self) -> dict:": "def counters(self) -> dict[str, typing.Any]:",
    "def lag(self) -> dict:": "def lag(self) -> dict[tuple[str, int], int]:",
    "def groups(self, stream: str) -> list:": "def groups(self, stream: str) -> list[dict[str, typing.Any]]:",
    "= 1000) -> list:": "= 1000) -> list[dict[str, typing.Any]]:",
    "def execute(self, sql: str, params: collections.abc.Iterable = ()) -> list:":
        "def execute(self, sql: str, params: collections.abc.Iterable[typing.Any] = ()) -> list[tuple[typing.Any, ...]]:",
    "def __eq__(self, arg0: typing.Any) -> typing.Any:": "def __eq__(self, arg0: object) -> bool:",
    "memo: dict)": "memo: dict[int, typing.Any])",
    "properties: dict)": "properties: dict[str, str])",
    "consumer_properties: dict,": "consumer_properties: dict[str, str],",
    "collections.abc.Iterable,": "collections.abc.Iterable[typing.Any],",
    "handler: collections.abc.Callable,": "handler: collections.abc.Callable[..., typing.Any],",
    "non_retryable: tuple,": "non_retryable: tuple[type[BaseException], ...],",
    "consumer_properties: dict, producer_properties: dict)":
        "consumer_properties: dict[str, str], producer_properties: dict[str, str])",
    "collections.abc.Iterable)": "collections.abc.Iterable[typing.Any])",
    "def redis_command(self, *args) -> None:":
        "def redis_command(self, *args: str | bytes | int | float) -> None:",
    "    __hash__: typing.ClassVar[None] = None":
        "    __hash__: typing.ClassVar[None]  # type: ignore[assignment]",
}
for old, new in replacements.items():
    s = s.replace(old, new)
s = re.sub(r"def poll\(self, timeout: ([^)]*)\) -> typing\.Any",
           r"def poll(self, timeout: \1) -> Message | None", s)
s = re.sub(r"-> list:\n", "-> list[tuple[str, int, int]]:\n", s)
s = re.sub(r"-> dict:\n", "-> dict[str, typing.Any]:\n", s)
s = re.sub(r"^ERROR_KINDS: tuple = .*$", "ERROR_KINDS: tuple[str, ...]", s, flags=re.M)
s = re.sub(r"[ \t]+$", "", s, flags=re.M)
open(target, "w").write(s)
PY
.venv/bin/ruff check --fix -q python/postroom/_core.pyi || true
echo "wrote python/postroom/_core.pyi"
