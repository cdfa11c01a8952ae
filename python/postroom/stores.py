"""Idempotency stores: where a processor remembers which events it already applied.

- :class:`MemoryStore` — bounded, in-process; for tests and demos.
- :class:`SQLiteStore` — the embedded default: one file; the handler's own SQL writes join
  the store's transaction (``context.execute(...)``, ``?`` placeholders), so effect and dedupe
  mark commit or roll back together.
- :class:`RedisStore` — marks in Redis (``SET NX``, the retention as TTL; a lease while
  the transaction runs).
  The mark cannot join the handler's own writes: a crash between the effect and the mark
  applies the effect again, so make such effects idempotent or use a SQL store.
- :class:`PostgresStore` — the same on PostgreSQL (``INSERT ... ON CONFLICT DO NOTHING``;
  ``$1`` placeholders in ``context.execute``); a small connection pool, reconnecting after
  the server restarts.

A mark older than the retention you purge with (``purge_older_than``) is forgotten: an event
redelivered after that is applied again. The retention is your replay horizon.
"""

from __future__ import annotations

import os

from . import _core

IdempotencyStore = _core.IdempotencyStore


class MemoryStore(_core.MemoryStore):
    """In-process, bounded to ``capacity`` marks (the oldest are dropped beyond it)."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        super().__init__(capacity)

    def __repr__(self) -> str:
        return f"MemoryStore(size={len(self)})"


class SQLiteStore(_core.SqliteStore):
    """A SQLite file (WAL, synchronous=FULL). ``table`` must match
    ``[A-Za-z_][A-Za-z0-9_]{0,62}``; it is created if missing."""

    def __init__(self, path: str | os.PathLike[str], *, table: str = "postroom_processed",
                 busy_timeout: float = 30.0) -> None:
        super().__init__(os.fspath(path), table, busy_timeout)

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"


class PostgresStore(_core.PostgresStore):
    """A PostgreSQL database (``postgresql://user@host:port/db``). ``table`` must match
    ``[A-Za-z_][A-Za-z0-9_]{0,62}`` (at most 63 bytes: PostgreSQL would truncate longer
    names); it is created if missing."""

    def __init__(self, url: str, *, table: str = "postroom_processed",
                 pool_size: int = 4) -> None:
        super().__init__(url, table, pool_size)
        self._url = url

    def __repr__(self) -> str:
        return f"PostgresStore({_core.redacted_url(self._url)!r})"


class RedisStore(_core.RedisStore):
    """Marks in Redis (``redis://[:password@]host:port/db``) under ``prefix``, kept for
    ``retention`` seconds (Redis expires them: the retention is the replay horizon). One
    write per event: the claim is the mark, and the commit marks the whole batch's
    transaction committed. A worker waits up to ``lease`` seconds for another worker's
    claim on the same event, then takes it over; a transaction that ran past its lease still
    commits unless another worker took one of its claims."""

    def __init__(self, url: str, *, retention: float = 7 * 24 * 3600.0,
                 prefix: str = "postroom:processed:", lease: float = 60.0) -> None:
        super().__init__(url, retention, prefix, lease)
        self._url = url

    def __repr__(self) -> str:
        return f"RedisStore({_core.redacted_url(self._url)!r})"


def open_store(url: str) -> IdempotencyStore:
    """``memory://``, ``sqlite:///path.db``, ``redis://host:port/db`` or
    ``postgresql://...``."""
    return _core.open_store(url)


__all__ = ["IdempotencyStore", "MemoryStore", "PostgresStore", "RedisStore", "SQLiteStore",
           "open_store"]
