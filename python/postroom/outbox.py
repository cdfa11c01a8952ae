"""The transactional outbox: ``postroom.Outbox``.

The application adds its event inside its own database transaction — through its own
``sqlite3`` or psycopg 3 connection — so the business write and the event commit or roll back
together; the relay publishes committed rows and marks them sent after the broker
acknowledged them::

    outbox = postroom.Outbox("sqlite:///shop.db", broker)
    with sqlite3.connect("shop.db") as conn:          # the application's transaction
        conn.execute("INSERT INTO orders VALUES (?, ?)", (order_id, total))
        outbox.add(conn, postroom.Event(type="order.placed", source="/shop", data=order),
                   aggregate_type="order", aggregate_id=order_id)
    outbox.run()                                       # or: postroom outbox relay
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from . import _core, errors
from ._core import Event
from ._signals import stop_on_signals
from .broker import BrokerBase, connect

ROUTINGS = ("postroom", "debezium")
DEBEZIUM_TOPIC_TEMPLATE = "outbox.event.${routedByValue}"  # Debezium's route.topic.replacement


@dataclass(frozen=True)
class FailedRow:
    seq: int
    id: str
    aggregate_id: str
    topic: str
    error: str


@dataclass(frozen=True)
class OutboxStatus:
    pending: int = 0
    failed: int = 0
    sent: int = 0  # sent rows still kept (delete_sent=False)
    oldest_pending_age: float | None = None  # seconds
    failed_rows: list[FailedRow] = field(default_factory=list)


@dataclass(frozen=True)
class RelayCounters:
    published: int = 0
    failed: int = 0
    batches: int = 0
    blocked_waits: int = 0
    standby_waits: int = 0
    purged: int = 0  # sent rows deleted by the retention


class Outbox:
    """An outbox table in ``database`` (``sqlite:///path.db`` or ``postgresql://...``),
    relayed to ``broker``. The table (default ``postroom_outbox``) is created or migrated on
    construction; its name must be letters, digits and ``_`` (at most 63 bytes).

    Routing (``routing``): rows go to their own ``topic`` column, else to the outbox's
    ``topic``, else to ``topic_template`` with ``${routedByValue}`` replaced by the row's
    ``route_by_field`` column (default ``aggregatetype``); without a template, to that value
    itself. ``routing="debezium"`` makes the template default to Debezium's outbox event
    router's, ``outbox.event.${routedByValue}``. The key is the aggregate id, so
    per-aggregate order holds; the event id is the outbox id and travels as the CloudEvent's
    ``ce_id`` and as the header ``id`` (Debezium's), so idempotent consumers absorb the
    duplicates a relay crash can cause. ``additional_headers`` copies columns to headers:
    ``{"column": "header"}``, or Debezium's ``"column:header[:alias],..."``.

    A table that exists with the event columns only (laid out as Debezium's documentation
    shows) is refused with the command that adds the relay's columns; ``migrate=True`` adds
    them in place (PostgreSQL). The payload column may be ``bytea``, ``jsonb``, ``json`` or
    ``text``; it is published as the database returns it.

    ``retention`` (seconds, 0 = keep): sent rows older than this are deleted by the relay,
    at most every ``purge_interval``; ``delete_sent=True`` deletes them at once instead.
    """

    def __init__(self, database: str, broker: BrokerBase | str = "embedded://", *,
                 table: str = "postroom_outbox", topic: str | None = None,
                 source: str = "/postroom/outbox", batch_size: int = 500,
                 poll_interval: float = 0.5, publish_timeout: float = 30.0,
                 lease: float = 5.0, blocked_backoff_max: float = 10.0,
                 delete_sent: bool = False, retention: float = 0.0,
                 purge_interval: float = 600.0, max_message_bytes: int = 1 << 20,
                 producer_properties: Mapping[str, str] | None = None,
                 routing: str = "postroom", topic_template: str | None = None,
                 route_by_field: str = "aggregatetype",
                 additional_headers: Mapping[str, str] | str | None = None,
                 migrate: bool = False) -> None:
        if routing not in ROUTINGS:
            raise errors.ConfigurationError(
                f"outbox routing {routing!r} is not known: use one of {', '.join(ROUTINGS)}")
        if topic_template is None and routing == "debezium":
            topic_template = DEBEZIUM_TOPIC_TEMPLATE
        if isinstance(additional_headers, str):
            fields = _core.parse_additional_placement(additional_headers)
        else:
            fields = [(str(c), str(h)) for c, h in (additional_headers or {}).items()]
        if isinstance(broker, str):
            broker = connect(broker)
        self.broker = broker
        self.database = database
        self.blocked_waits = 0  # backoffs of run(idle_timeout=...)
        self.table = table
        self._o = _core.Outbox(
            database_url=database, broker_url=broker.url, table=table, topic=topic or "",
            source=source, batch_size=batch_size, poll_interval=poll_interval,
            publish_timeout=publish_timeout, lease=lease,
            blocked_backoff_max=blocked_backoff_max, delete_sent=delete_sent,
            retention=retention, purge_interval=purge_interval,
            max_message_bytes=max_message_bytes,
            producer_properties={**broker.properties, **(producer_properties or {})},
            topic_template=topic_template or "", route_by_field=route_by_field,
            additional_fields=fields, migrate=migrate)

    @property
    def payload_column(self) -> str:
        """The payload column's type: ``bytea``, ``text``, ``json`` or ``jsonb``."""
        return str(self._o.payload_column)

    @property
    def added_columns(self) -> list[str]:
        """The relay's columns ``migrate=True`` added to an existing table (empty: none)."""
        return list(self._o.added_columns)

    def __repr__(self) -> str:
        return (f"Outbox({_core.redacted_url(self.database)!r}, table={self.table!r}, "
                f"broker={self.broker.redacted_url!r})")

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def add(self, connection: Any, event: Event, *, aggregate_type: str, aggregate_id: str,
            topic: str | None = None) -> str:
        """Adds ``event`` through the application's own ``connection`` (``sqlite3``, psycopg 3,
        or a SQLAlchemy Connection or Session on either), inside its current transaction: it
        is published only if that transaction commits. Returns the event id. Does not
        commit."""
        row = _core.outbox_row(event, aggregate_type, aggregate_id, topic)
        module = type(connection).__module__
        if module.startswith("sqlalchemy"):
            self._add_through_sqlalchemy(connection, row)
        elif isinstance(connection, sqlite3.Connection):
            if self._o.dialect != "sqlite":
                raise TypeError("this outbox is in PostgreSQL: add through a psycopg connection")
            connection.execute(_core.outbox_insert_statement("sqlite", self.table), row)
        elif module.startswith("psycopg"):
            if self._o.dialect != "postgres":
                raise TypeError("this outbox is in SQLite: add through a sqlite3 connection")
            connection.execute(self._insert_statement("psycopg"), row)
        else:
            raise TypeError(f"cannot add through a {type(connection).__qualname__}: pass a "
                            "sqlite3.Connection, a psycopg (3) Connection, or a SQLAlchemy "
                            "Connection or Session")
        return str(row[0])

    def _insert_statement(self, dialect: str) -> str:
        return _core.outbox_insert_statement(dialect, self.table, self.payload_column)

    def _add_through_sqlalchemy(self, connection: Any, row: tuple[Any, ...]) -> None:
        """A SQLAlchemy Session or Connection: the row joins its transaction."""
        if hasattr(connection, "exec_driver_sql"):
            conn = connection
        elif hasattr(connection, "connection"):
            conn = connection.connection()  # a Session: its connection, in its transaction
        else:
            raise TypeError(f"cannot add through a {type(connection).__qualname__}")
        dialect = conn.dialect.name
        wanted = "sqlite" if self._o.dialect == "sqlite" else "postgresql"
        if dialect != wanted:
            raise TypeError(f"this outbox is in {self._o.dialect}, the SQLAlchemy connection "
                            f"is to {dialect}")
        style = conn.dialect.paramstyle
        if style == "qmark":
            statement = _core.outbox_insert_statement("sqlite", self.table)
        elif style in ("format", "pyformat"):
            statement = self._insert_statement("psycopg")
        else:
            raise TypeError(f"SQLAlchemy driver paramstyle {style!r} is not supported: use "
                            "sqlite3 (pysqlite) or psycopg")
        conn.exec_driver_sql(statement, row)

    def relay_once(self) -> int:
        """One relay round: publishes pending rows batch by batch (two batches in flight)
        until none are left or about a second has passed, and marks them before returning.
        Returns how many rows were marked sent or failed (0: nothing pending, or another
        relay holds the lease)."""
        return int(self._o.relay_once())

    def run(self, *, idle_timeout: float | None = None,
            handle_signals: bool = True) -> RelayCounters:
        """Relays until stop(), SIGINT or SIGTERM — or, with ``idle_timeout``, until this
        relay, holding the lease, found nothing pending for that many seconds (a standby
        keeps waiting). Backs off while the broker or the database is down. Returns the
        counters."""
        with stop_on_signals(self.stop, handle_signals):
            if idle_timeout is None:
                self._o.run()
            else:
                last_work = time.monotonic()
                while not self.stopping:
                    standby = self.counters.standby_waits
                    # Idle means: this relay leads and found nothing. A standby waits on.
                    if self._relay_or_back_off() or self.counters.standby_waits != standby:
                        last_work = time.monotonic()
                    elif time.monotonic() - last_work >= idle_timeout:
                        break
        return self.counters

    def _relay_or_back_off(self) -> bool:
        try:
            if self.relay_once():
                return True
        except errors.PostroomError as error:
            if error.retriable is False:
                raise
            self.blocked_waits += 1  # the broker or the database is down: try again soon
        time.sleep(0.2)
        return False

    def stop(self) -> None:
        """Asks run() to stop; safe from any thread and from signal handlers."""
        self._o.stop()

    @property
    def stopping(self) -> bool:
        return bool(self._o.stopping)

    def status(self) -> OutboxStatus:
        """Pending, failed and sent counts, the age of the oldest pending row, and the failed
        rows with their reasons."""
        raw = self._o.status()
        rows = [FailedRow(**r) for r in raw.pop("failed_rows")]
        return OutboxStatus(failed_rows=rows, **raw)

    def requeue_failed(self) -> int:
        """Puts failed rows back to pending (after fixing their cause); returns how many."""
        return int(self._o.requeue_failed())

    def purge_sent(self, older_than: float) -> int:
        """Deletes sent rows older than ``older_than`` seconds; returns how many."""
        return int(self._o.purge_sent_older_than(older_than))

    @property
    def counters(self) -> RelayCounters:
        return RelayCounters(**self._o.counters())

    def close(self) -> None:
        self._o.close()


__all__ = ["FailedRow", "Outbox", "OutboxStatus", "RelayCounters"]
