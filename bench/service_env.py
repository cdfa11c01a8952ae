"""What the benchmark scripts share: the URLs of the services scripts/services.sh started,
and running cases over rounds."""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from typing import Any


def env(name: str) -> str:
    """The service URL in environment variable ``name``; exits saying how to set it."""
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"{name} is not set: scripts/services.sh start; "
                         'eval "$(scripts/services.sh env)"')
    return value


def drop_keys(client: Any, *patterns: str) -> None:
    """Unlinks every Redis key matching ``patterns`` (a benchmark's dedupe marks), so runs do
    not pile up keys that later runs pay for in AOF rewrites."""
    for pattern in patterns:
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=10_000):
            batch.append(key)
            if len(batch) == 10_000:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)


def run_rounds(cases: dict[str, Callable[[], dict[str, Any]]], repeat: int,
               after_each: Callable[[], None] = lambda: None) -> dict[str, list[dict[str, Any]]]:
    """Runs every case ``repeat`` times, the order reversed every other round (so neither
    side always runs on a warmer or a busier machine); returns each case's results."""
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in cases}
    for round_no in range(repeat):
        for name in list(cases)[:: 1 if round_no % 2 == 0 else -1]:
            rounds[name].append(cases[name]())
            after_each()
    return rounds


def median_result(runs: list[dict[str, Any]], rate: str) -> dict[str, Any]:
    """One result for a case measured over rounds: the median of each figure, and the rates
    of every round under ``runs``."""
    out = dict(runs[0])
    for field in ("seconds", rate, "cpu_s_per_1000"):
        value = statistics.median(x[field] for x in runs)
        out[field] = round(value) if field == rate else round(value, 4)
    out["runs"] = [x[rate] for x in runs]
    return out


def paired_ratio(base: list[dict[str, Any]], other: list[dict[str, Any]], rate: str) -> float:
    """The median of the per-round ratios other / base."""
    return round(float(statistics.median(o[rate] / b[rate] for b, o in zip(base, other))), 2)
