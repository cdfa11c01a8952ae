"""postroom.Outbox: events added in the application's own transaction (sqlite3, psycopg) are
published once committed and never when rolled back; gap-safe claiming, two relays, bad rows,
hostile table names and the CLI — on the embedded broker, real Kafka and Redis Streams,
SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import postroom
from postroom import errors
from postroom.cli import main as cli

from .conftest import require_env, unique

pytestmark = pytest.mark.contract


@pytest.fixture
def broker(any_broker: postroom.Broker) -> postroom.Broker:
    """The relay's destinations: every transport (conftest.any_broker)."""
    return any_broker


@pytest.fixture
def topic(broker: postroom.Broker) -> Iterator[str]:
    name = unique("outbox")
    broker.create_topic(name, 3)
    yield name
    if not broker.is_embedded:
        broker.delete_topic(name)


def order_event(n: int) -> postroom.Event:
    return postroom.Event(type="order.placed", source="/shop", data={"n": n})


def read_all(broker: postroom.Broker, topic: str, n: int,
             idle: float = 3.0) -> list[postroom.Message]:
    with broker.consumer(unique("reader"), topic) as consumer:
        return list(consumer.messages(idle_timeout=idle, limit=n))


def per_aggregate_order_violations(messages: list[postroom.Message]) -> int:
    last: dict[bytes, int] = {}
    violations = 0
    for m in messages:
        n = int(m.event().json()["n"])
        key = m.key or b""
        if n < last.get(key, -1):
            violations += 1
        last[key] = n
    return violations


def test_sqlite_commits_publish_and_rollbacks_never(broker: postroom.Broker, topic: str,
                                                    tmp_path: Path) -> None:
    path = tmp_path / "shop.db"
    with postroom.Outbox(f"sqlite:///{path}", broker, topic=topic) as outbox:
        with sqlite3.connect(path) as conn:  # commits on leaving the block
            conn.execute("CREATE TABLE orders (id INTEGER)")
            for n in range(5):
                conn.execute("INSERT INTO orders VALUES (?)", (n,))
                outbox.add(conn, order_event(n), aggregate_type="order",
                           aggregate_id=f"customer-{n % 2}")
        conn = sqlite3.connect(path)
        conn.execute("INSERT INTO orders VALUES (99)")
        rolled_back = outbox.add(conn, order_event(99), aggregate_type="order",
                                 aggregate_id="customer-0")
        conn.rollback()
        conn.close()
        assert outbox.status().pending == 5
        assert outbox.relay_once() == 5
        status = outbox.status()
        assert (status.pending, status.sent, status.failed) == (0, 5, 0)
        assert status.oldest_pending_age is None
    got = read_all(broker, topic, 6)
    assert sorted(int(m.event().json()["n"]) for m in got) == [0, 1, 2, 3, 4]
    assert rolled_back not in {m.event().id for m in got}
    assert per_aggregate_order_violations(got) == 0
    assert {m.key for m in got} == {b"customer-0", b"customer-1"}


def test_sqlalchemy_sessions_and_connections_add_in_their_transaction(
        embedded: postroom.Broker, tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    path = tmp_path / "shop.db"
    embedded.create_topic("sa-orders", 1)
    engine = create_engine(f"sqlite:///{path}")
    with postroom.Outbox(f"sqlite:///{path}", embedded, topic="sa-orders") as outbox:
        with Session(engine) as session, session.begin():
            session.execute(text("CREATE TABLE orders (id INTEGER)"))
            session.execute(text("INSERT INTO orders VALUES (1)"))
            kept = outbox.add(session, order_event(1), aggregate_type="order", aggregate_id="a")
        with engine.connect() as conn:
            outbox.add(conn, order_event(2), aggregate_type="order", aggregate_id="a")
            conn.rollback()
        with engine.begin() as conn:
            also = outbox.add(conn, order_event(3), aggregate_type="order", aggregate_id="a")
        assert outbox.relay_once() == 2
    got = [m.event().id for m in read_all(embedded, "sa-orders", 3)]
    assert got == [kept, also]


def test_bad_rows_fail_with_a_reason_and_can_be_requeued(embedded: postroom.Broker,
                                                         tmp_path: Path) -> None:
    path = tmp_path / "shop.db"
    embedded.create_topic("orders", 1)
    with postroom.Outbox(f"sqlite:///{path}", embedded, topic="orders") as outbox:
        with sqlite3.connect(path) as conn:
            outbox.add(conn, order_event(1), aggregate_type="order", aggregate_id="a")
            outbox.add(conn, order_event(2), aggregate_type="order", aggregate_id="a",
                       topic="invoices")  # does not exist yet
            outbox.add(conn, order_event(3), aggregate_type="order", aggregate_id="b")
        assert outbox.relay_once() == 3
        status = outbox.status()
        assert (status.sent, status.failed) == (2, 1)
        (failed,) = status.failed_rows
        assert failed.topic == "invoices" and "opic" in failed.error
        embedded.create_topic("invoices", 1)
        assert outbox.requeue_failed() == 1
        assert outbox.relay_once() == 1
        assert outbox.status().failed == 0
    with pytest.raises(TypeError, match="sqlite3.Connection, a psycopg"):
        outbox.add(object(), order_event(4), aggregate_type="order", aggregate_id="a")


@pytest.mark.parametrize("table", ['x"; DROP TABLE orders; --', "t;", "ünïcode", "1abc",
                                   "a" * 64])
def test_hostile_table_names_are_rejected_and_the_database_is_unchanged(
        table: str, tmp_path: Path) -> None:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER)")
    before = path.read_bytes()
    with pytest.raises(errors.ConfigurationError, match="not allowed"):
        postroom.Outbox(f"sqlite:///{path}", table=table)
    assert path.read_bytes() == before


def test_cli_relays_and_reports_status(embedded: postroom.Broker, tmp_path: Path) -> None:
    path = tmp_path / "shop.db"
    embedded.create_topic("cli-orders", 1)
    db = f"sqlite:///{path}"
    outbox = postroom.Outbox(db, embedded)
    with sqlite3.connect(path) as conn:
        for n in range(3):
            outbox.add(conn, order_event(n), aggregate_type="cli-orders", aggregate_id="a")
    outbox.close()
    runner = CliRunner()
    status = runner.invoke(cli, ["outbox", "status", "--db", db, "--json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["pending"] == 3
    relay = runner.invoke(cli, ["outbox", "relay", "--db", db, "--broker", embedded.url,
                                "--idle-exit", "1", "--json"])
    assert relay.exit_code == 0, relay.output
    assert json.loads(relay.output[relay.output.index("{"):])["published"] == 3
    table = runner.invoke(cli, ["outbox", "status", "--db", db])
    assert "pending 0" in table.output and "sent 3" in table.output
    bad = runner.invoke(cli, ["outbox", "status", "--db", "mysql://x/y"])
    assert bad.exit_code == 1 and "sqlite:///path.db" in bad.output


@pytest.fixture
def pg_url() -> str:
    return require_env("POSTROOM_PG_URL")


@pytest.mark.postgres
def test_postgres_late_commit_with_a_lower_seq_is_not_lost(broker: postroom.Broker, topic: str,
                                                           pg_url: str) -> None:
    """A long transaction takes a lower seq, later ones commit first and are published; the
    long one is still published when it commits (claiming by status, not by seq)."""
    import psycopg

    table = unique("outbox").replace("-", "_")
    with postroom.Outbox(pg_url, broker, table=table, topic=topic) as outbox:
        slow = psycopg.connect(pg_url)
        outbox.add(slow, order_event(0), aggregate_type="order", aggregate_id="slow")
        for n in range(1, 4):
            with psycopg.connect(pg_url) as fast:  # commits on leaving the block
                outbox.add(fast, order_event(n), aggregate_type="order", aggregate_id="fast")
        assert outbox.relay_once() == 3
        slow.commit()
        slow.close()
        rolled = psycopg.connect(pg_url)
        outbox.add(rolled, order_event(9), aggregate_type="order", aggregate_id="fast")
        rolled.rollback()
        rolled.close()
        assert outbox.relay_once() == 1
        assert outbox.status().pending == 0
    got = read_all(broker, topic, 5)
    assert sorted(int(m.event().json()["n"]) for m in got) == [0, 1, 2, 3]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP TABLE "{table}"')


@pytest.mark.postgres
def test_two_relays_on_one_table_lose_nothing_and_keep_per_aggregate_order(
        broker: postroom.Broker, topic: str, pg_url: str) -> None:
    import psycopg

    table = unique("outbox").replace("-", "_")
    relays = [postroom.Outbox(pg_url, broker, table=table, topic=topic, batch_size=20,
                              poll_interval=0.05) for _ in range(2)]
    threads = [threading.Thread(target=r.run, kwargs={"handle_signals": False}) for r in relays]
    for t in threads:
        t.start()
    events = 300
    with psycopg.connect(pg_url) as conn:
        for n in range(events):
            relays[0].add(conn, order_event(n), aggregate_type="order",
                          aggregate_id=f"customer-{n % 7}")
            if n % 10 == 9:
                conn.commit()
    deadline = time.monotonic() + 60
    while relays[0].status().pending and time.monotonic() < deadline:
        time.sleep(0.1)
    for r in relays:
        r.stop()
    for t in threads:
        t.join()
    published = [r.counters.published for r in relays]
    for r in relays:
        r.close()
    got = read_all(broker, topic, events + 10)
    ids = [m.event().id for m in got]
    assert len(set(ids)) == events, "lost = 0"
    assert len(ids) == events, "no duplicates without a crash"
    assert per_aggregate_order_violations(got) == 0
    assert sum(published) == events
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP TABLE "{table}"')


@pytest.mark.postgres
def test_postgres_notify_wakes_the_relay_before_its_next_poll(broker: postroom.Broker,
                                                              topic: str, pg_url: str) -> None:
    import psycopg

    table = unique("outbox").replace("-", "_")
    outbox = postroom.Outbox(pg_url, broker, table=table, topic=topic, poll_interval=30.0)
    runner = threading.Thread(target=outbox.run, kwargs={"handle_signals": False})
    runner.start()
    try:
        time.sleep(1.0)  # the relay is now waiting on LISTEN, its next poll 30 s away
        with psycopg.connect(pg_url) as conn:
            outbox.add(conn, order_event(1), aggregate_type="order", aggregate_id="a")
        committed = time.monotonic()
        while outbox.counters.published == 0 and time.monotonic() - committed < 20:
            time.sleep(0.01)
        assert outbox.counters.published == 1
        assert time.monotonic() - committed < 10, "woken by NOTIFY, not by the 30 s poll"
    finally:
        outbox.stop()
        runner.join()
        outbox.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP TABLE "{table}"')


def stored_cursor(pg_url: str, table: str) -> int:
    import psycopg

    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT sent_through FROM postroom_outbox_relays "
                           "WHERE outbox_table = %s", (table,)).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.postgres
def test_postgres_rows_above_an_open_gap_are_not_published_again_after_a_restart(
        embedded: postroom.Broker, pg_url: str) -> None:
    """The relay's cursor stays below a seq held by a transaction still running; the rows it
    published above it are marked sent, so a relay started meanwhile does not publish them
    again. Once the transaction ends (committed or rolled back) the cursor passes it."""
    import psycopg

    table = unique("outbox").replace("-", "_")
    topic = unique("outbox")
    embedded.create_topic(topic, 1)
    slow = psycopg.connect(pg_url)
    with postroom.Outbox(pg_url, embedded, table=table, topic=topic, lease=0.3) as outbox:
        outbox.add(slow, order_event(0), aggregate_type="order", aggregate_id="slow")
        with psycopg.connect(pg_url) as fast:
            for n in range(1, 4):
                outbox.add(fast, order_event(n), aggregate_type="order", aggregate_id="fast")
        assert outbox.relay_once() == 3
        assert stored_cursor(pg_url, table) == 0, "held below the running transaction's seq"
        status = outbox.status()
        assert (status.pending, status.sent) == (0, 3)
    time.sleep(0.4)  # the lease of the closed relay runs out
    with postroom.Outbox(pg_url, embedded, table=table, topic=topic, lease=0.3) as again:
        assert again.relay_once() == 0
        assert again.counters.standby_waits == 0, "it led, and found nothing to publish"
        rolled = psycopg.connect(pg_url)
        again.add(rolled, order_event(9), aggregate_type="order", aggregate_id="fast")
        slow.commit()
        rolled.rollback()
        rolled.close()
        with psycopg.connect(pg_url) as fast:
            again.add(fast, order_event(4), aggregate_type="order", aggregate_id="fast")
        assert again.relay_once() == 2
        assert stored_cursor(pg_url, table) == 6, "past the committed and the rolled-back seq"
        status = again.status()
        assert (status.pending, status.sent, status.failed) == (0, 5, 0)
    slow.close()
    got = read_all(embedded, topic, 10)
    assert [int(m.event().json()["n"]) for m in got] == [1, 2, 3, 0, 4]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP TABLE "{table}"')


@pytest.mark.postgres
def test_postgres_a_seq_taken_by_a_newer_transaction_than_the_snapshot_lists_is_not_lost(
        embedded: postroom.Broker, pg_url: str) -> None:
    """A snapshot lists only the running transactions below its xmax (the newest ended xid
    + 1). A transaction with a newer xid that took a seq below a committed row is running,
    but unlisted: the relay's cursor must wait for it all the same."""
    import psycopg

    table = unique("outbox").replace("-", "_")
    topic = unique("outbox")
    embedded.create_topic(topic, 1)
    with postroom.Outbox(pg_url, embedded, table=table, topic=topic) as outbox:
        assert outbox.relay_once() == 0  # takes the lease: no write of the relay in between
        older = psycopg.connect(pg_url)
        newer = psycopg.connect(pg_url)
        older.execute("SELECT pg_current_xact_id()")
        newer.execute("SELECT pg_current_xact_id()")  # a larger xid than `older`
        outbox.add(newer, order_event(1), aggregate_type="order", aggregate_id="a")  # seq 1
        outbox.add(older, order_event(2), aggregate_type="order", aggregate_id="b")  # seq 2
        older.commit()  # the newest ended xid is now older's: newer is above the xmax
        assert outbox.relay_once() == 1
        assert stored_cursor(pg_url, table) == 0, "held below seq 1, whose writer runs"
        newer.commit()
        assert outbox.relay_once() == 1
        assert stored_cursor(pg_url, table) == 2
        older.close()
        newer.close()
    got = read_all(embedded, topic, 3)
    assert sorted(int(m.event().json()["n"]) for m in got) == [1, 2], "lost = 0"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP TABLE "{table}"')


@pytest.mark.postgres
def test_postgres_concurrent_writers_committing_out_of_order_lose_nothing(
        embedded: postroom.Broker, pg_url: str) -> None:
    """Writers hold their transactions open for random times and roll some back while the
    relay runs: every committed event is published exactly once, none rolled back is, and
    each writer's events (its own aggregate) arrive in commit order."""
    import random

    import psycopg

    table = unique("outbox").replace("-", "_")
    topic = unique("outbox")
    embedded.create_topic(topic, 1)
    relay = postroom.Outbox(pg_url, embedded, table=table, topic=topic, batch_size=7,
                            poll_interval=0.02)
    runner = threading.Thread(target=relay.run, kwargs={"handle_signals": False})
    runner.start()
    committed: list[str] = []
    rolled_back: list[str] = []
    lock = threading.Lock()

    def writer(number: int) -> None:
        rng = random.Random(number)
        with psycopg.connect(pg_url) as conn:
            for n in range(40):
                ids = [relay.add(conn, order_event(n * 10 + k), aggregate_type="order",
                                 aggregate_id=f"writer-{number}")
                       for k in range(rng.randint(1, 3))]
                time.sleep(rng.random() * 0.02)
                if rng.random() < 0.15:
                    conn.rollback()
                    with lock:
                        rolled_back.extend(ids)
                else:
                    conn.commit()
                    with lock:
                        committed.extend(ids)

    writers = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    deadline = time.monotonic() + 30
    while (relay.status().pending or stored_cursor(pg_url, table) < max_seq(pg_url, table)) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    relay.stop()
    runner.join()
    status = relay.status()
    relay.close()
    got = read_all(embedded, topic, len(committed) + 10)
    ids = [m.event().id for m in got]
    assert sorted(ids) == sorted(committed), "lost = 0 and no duplicates"
    assert not set(ids) & set(rolled_back)
    assert per_aggregate_order_violations(got) == 0
    assert (status.pending, status.sent) == (0, len(committed))
    assert stored_cursor(pg_url, table) >= max_seq(pg_url, table), "idle, it caught up"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP TABLE "{table}"')


def max_seq(pg_url: str, table: str) -> int:
    import psycopg

    with psycopg.connect(pg_url) as conn:
        row = conn.execute(f'SELECT MAX(seq) FROM "{table}"').fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.postgres
def test_postgres_failed_rows_requeued_behind_the_cursor_are_published(
        embedded: postroom.Broker, pg_url: str) -> None:
    import psycopg

    table = unique("outbox").replace("-", "_")
    topic, invoices = unique("outbox"), unique("invoices")
    embedded.create_topic(topic, 1)
    with postroom.Outbox(pg_url, embedded, table=table, topic=topic) as outbox:
        with psycopg.connect(pg_url) as conn:
            outbox.add(conn, order_event(1), aggregate_type="order", aggregate_id="a")
            outbox.add(conn, order_event(2), aggregate_type="order", aggregate_id="a",
                       topic=invoices)  # does not exist yet
            outbox.add(conn, order_event(3), aggregate_type="order", aggregate_id="b")
        assert outbox.relay_once() == 3
        assert stored_cursor(pg_url, table) == 3, "the failed row is settled too"
        status = outbox.status()
        assert (status.pending, status.sent, status.failed) == (0, 2, 1)
        embedded.create_topic(invoices, 1)
        assert outbox.requeue_failed() == 1
        assert outbox.status().pending == 1
        assert outbox.relay_once() == 1
        status = outbox.status()
        assert (status.pending, status.sent, status.failed) == (0, 3, 0)
    assert [m.event().json()["n"] for m in read_all(embedded, invoices, 2)] == [2]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP TABLE "{table}"')


def pending_index_name(table: str) -> str:
    """The name earlier versions gave the partial index of pending rows (FNV-1a of the table's
    name, so it fits PostgreSQL's 63 bytes)."""
    h = 1469598103934665603
    for byte in table.encode():
        h = ((h ^ byte) * 1099511628211) % 2**64
    return f"postroom_outbox_pending_{h:016x}"


@pytest.mark.postgres
def test_postgres_table_of_an_earlier_version_moves_to_the_cursor(embedded: postroom.Broker,
                                                                  pg_url: str) -> None:
    """Earlier versions marked every row sent and indexed the pending rows; opening the outbox
    drops those indexes, takes seq values through postroom_outbox_next_seq, and starts the
    cursor below the first pending row: rows marked sent are not published again, pending
    ones are, and the status counts both."""
    import psycopg

    table = unique("outbox").replace("-", "_")
    topic = unique("outbox")
    embedded.create_topic(topic, 1)

    def indexes(conn: psycopg.Connection[tuple[str, str]]) -> dict[str, str]:
        rows = conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s",
                            (table,)).fetchall()
        return {name: definition for name, definition in rows}

    def seq_default(conn: psycopg.Connection[tuple[str]]) -> str:
        row = conn.execute("SELECT column_default FROM information_schema.columns WHERE "
                           "table_name = %s AND column_name = 'seq'", (table,)).fetchone()
        assert row is not None
        return str(row[0])

    with postroom.Outbox(pg_url, embedded, table=table, topic=topic) as earlier, \
            psycopg.connect(pg_url, autocommit=True) as conn:
        assert "postroom_outbox_next_seq" in seq_default(conn)
        # Back to what an earlier version left: a plain serial, its indexes, no cursor.
        conn.execute(f'ALTER TABLE "{table}" ALTER COLUMN seq SET DEFAULT '
                     f"nextval(pg_get_serial_sequence('\"{table}\"', 'seq'))")
        conn.execute(f'CREATE INDEX "{table}_pending" ON "{table}" (status, seq)')
        conn.execute(f'CREATE INDEX "{pending_index_name(table)}" ON "{table}" (seq) '
                     "WHERE status = 'pending'")
        conn.execute("UPDATE postroom_outbox_relays SET sent_through = NULL "
                     "WHERE outbox_table = %s", (table,))
        with psycopg.connect(pg_url) as writer:
            for n in range(6):
                earlier.add(writer, order_event(n), aggregate_type="order", aggregate_id="a")
        conn.execute(f'UPDATE "{table}" SET status = \'sent\' WHERE seq <= 2')
    with postroom.Outbox(pg_url, embedded, table=table, topic=topic) as outbox, \
            psycopg.connect(pg_url, autocommit=True) as conn:
        assert "postroom_outbox_next_seq" in seq_default(conn)
        now = indexes(conn)
        assert f"{table}_pending" not in now, "the old (status, seq) index is dropped"
        assert not [d for d in now.values() if "WHERE" in d], "no index of pending rows"
        assert stored_cursor(pg_url, table) == 2
        status = outbox.status()
        assert (status.pending, status.sent) == (4, 2)
        assert outbox.relay_once() == 4
        status = outbox.status()
        assert (status.pending, status.sent) == (0, 6)
        conn.execute(f'DROP TABLE "{table}"')
    assert [m.event().json()["n"] for m in read_all(embedded, topic, 10)] == [2, 3, 4, 5]
