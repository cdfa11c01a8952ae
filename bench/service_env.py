"""What the benchmark scripts share: the URLs of the services scripts/services.sh started."""

from __future__ import annotations

import os


def env(name: str) -> str:
    """The service URL in environment variable ``name``; exits saying how to set it."""
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"{name} is not set: scripts/services.sh start; "
                         'eval "$(scripts/services.sh env)"')
    return value
