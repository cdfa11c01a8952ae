"""SIGINT/SIGTERM as a clean stop for the long-running loops (processor, outbox relay)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any


@contextmanager
def stop_on_signals(stop: Callable[[], None], enabled: bool = True) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM call ``stop()`` (main thread only); the previous
    handlers come back afterwards."""
    restore: list[tuple[int, Any]] = []
    if enabled and threading.current_thread() is threading.main_thread():
        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop()

        for signum in (signal.SIGINT, signal.SIGTERM):
            restore.append((signum, signal.signal(signum, on_signal)))
    try:
        yield
    finally:
        for restored, previous in restore:
            signal.signal(restored, previous)
