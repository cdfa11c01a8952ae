"""What the benchmark scripts share: the URLs of the services scripts/services.sh started."""

from __future__ import annotations

import os
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
