"""The outbox where a Debezium user looks: a table created as Debezium's documentation shows,
rows written with plain SQL as a Debezium user's application writes them, the relay pointed at
it (Python and the CLI), and the messages read with confluent-kafka as that user's consumers
read them: topic outbox.event.<aggregatetype>, key aggregateid, value the payload byte for
byte, header `id` the row id."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import postroom
from postroom import errors
from postroom.cli import main as cli

from .conftest import require_env, unique

RELAY_COLUMNS = "seq, headers, topic, created_at, status, attempts, sent_at, error"


@pytest.fixture
def pg_url() -> str:
    return require_env("POSTROOM_PG_URL")


@pytest.fixture
def kafka() -> postroom.Broker:
    return postroom.connect(require_env("POSTROOM_KAFKA_URL"))


@pytest.fixture
def table(pg_url: str) -> Iterator[str]:
    import psycopg

    name = unique("outboxevent").replace("-", "_")
    yield name
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP TABLE IF EXISTS "{name}"')
        conn.execute("DELETE FROM postroom_outbox_relays WHERE outbox_table = %s", (name,))


@pytest.fixture
def aggregate(kafka: postroom.Broker) -> Iterator[str]:
    """An aggregate type and its Debezium topic, outbox.event.<aggregatetype>."""
    name = unique("order").replace("-", "_")
    kafka.create_topic(f"outbox.event.{name}", 3)
    yield name
    kafka.delete_topic(f"outbox.event.{name}")


def create_debezium_table(pg_url: str, table: str, payload: str = "jsonb",
                          extra: str = "") -> None:
    """The table exactly as Debezium's outbox event router documentation shows it."""
    import psycopg

    with psycopg.connect(pg_url) as conn:
        conn.execute(f"""CREATE TABLE {table} (
            id uuid NOT NULL PRIMARY KEY,
            aggregatetype varchar(255) NOT NULL,
            aggregateid varchar(255) NOT NULL,
            type varchar(255) NOT NULL,
            payload {payload}{extra})""")


def write_event(pg_url: str, table: str, aggregate_type: str, aggregate_id: str,
                event_type: str, payload: Any, **extra: Any) -> str:
    """One event, as a Debezium user's application writes it: plain SQL in its own
    transaction."""
    import psycopg

    event_id = str(uuid.uuid4())
    columns = ["id", "aggregatetype", "aggregateid", "type", "payload", *extra]
    values = [event_id, aggregate_type, aggregate_id, event_type, payload, *extra.values()]
    with psycopg.connect(pg_url) as conn:
        conn.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                     f"({', '.join(['%s'] * len(values))})", values)
    return event_id


def stored_payloads(pg_url: str, table: str) -> dict[str, bytes]:
    """Each row's payload as PostgreSQL returns it (text for json types, raw bytes for bytea)."""
    import psycopg

    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(f"SELECT id::text, payload FROM {table}").fetchall()
        return {i: p if isinstance(p, bytes) else raw_text(conn, table, i) for i, p in rows}


def raw_text(conn: Any, table: str, event_id: str) -> bytes:
    row = conn.execute(f"SELECT payload::text FROM {table} WHERE id::text = %s",
                       (event_id,)).fetchone()
    return bytes(row[0], "utf-8")


def consume(topic: str, n: int, timeout: float = 20.0) -> list[Any]:
    """Up to n records of `topic` (all partitions, from the start), read with confluent-kafka."""
    import time

    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    bootstrap = require_env("POSTROOM_KAFKA_URL").removeprefix("kafka://")
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("debezium-reader"),
                         "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        got: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(got) < n and time.monotonic() < deadline:
            for m in consumer.consume(n - len(got), timeout=0.5):
                assert m.error() is None, m.error()
                got.append(m)
        # Anything beyond n would be a duplicate: look a little longer.
        got.extend(m for m in consumer.consume(10, timeout=1.0) if m.error() is None)
        return got
    finally:
        consumer.close()


def headers_of(message: Any) -> dict[str, bytes]:
    return {k: v for k, v in (message.headers() or [])}


@pytest.mark.postgres
def test_a_debezium_layout_table_is_refused_naming_the_missing_columns_and_the_command(
        pg_url: str, table: str) -> None:
    """Before: `column "seq" does not exist`, which did not say the layout was the problem."""
    create_debezium_table(pg_url, table)
    with pytest.raises(errors.ConfigurationError) as refused:
        postroom.Outbox(pg_url, table=table)
    message = str(refused.value)
    assert RELAY_COLUMNS in message
    assert f"postroom outbox migrate --db {pg_url} --table {table}" in message
    relay = CliRunner().invoke(cli, ["outbox", "relay", "--db", pg_url, "--table", table,
                                     "--idle-exit", "1"])
    assert relay.exit_code == 1
    assert "postroom outbox migrate" in relay.output and "seq" in relay.output
    import psycopg

    with psycopg.connect(pg_url) as conn:  # refused before anything was changed
        columns = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
            "ORDER BY ordinal_position", (table,))]
    assert columns == ["id", "aggregatetype", "aggregateid", "type", "payload"]


@pytest.mark.postgres
def test_the_migrate_hint_shows_the_database_url_through_the_one_redaction_rule(
        pg_url: str, table: str) -> None:
    """The hint once masked passwords by a rule of its own, which showed a password given
    as a query parameter (?password=...) and part of one holding '@'."""
    create_debezium_table(pg_url, table)
    secret = "s3cr3t-P4ss"
    # The test server trusts local connections: the password is sent and not checked.
    url = pg_url + ("&" if "?" in pg_url else "?") + f"password={secret}"
    with pytest.raises(errors.ConfigurationError) as refused:
        postroom.Outbox(url, table=table)
    message = str(refused.value)
    assert secret not in message, message
    assert f"--db {postroom.redacted_url(url)} --table {table}" in message


@pytest.mark.postgres
@pytest.mark.kafka
def test_debezium_rows_arrive_as_debeziums_event_router_publishes_them(
        pg_url: str, kafka: postroom.Broker, table: str, aggregate: str) -> None:
    """Rows written before the migration (they become pending) and after it are published
    once each, to outbox.event.<aggregatetype>, key aggregateid, value the payload byte for
    byte, header id = the row id, in per-aggregate order."""
    create_debezium_table(pg_url, table)
    before = [write_event(pg_url, table, aggregate, f"{n % 2}", "OrderCreated",
                          json.dumps({"n": n, "lineItems": [{"item": "Debezium in Action"}]}))
              for n in range(4)]
    migrated = CliRunner().invoke(cli, ["outbox", "migrate", "--db", pg_url, "--table", table,
                                        "--json"])
    assert migrated.exit_code == 0, migrated.output
    report = json.loads(migrated.output)
    assert report["added_columns"] == RELAY_COLUMNS.split(", ")
    assert (report["payload"], report["pending"]) == ("jsonb", 4)
    after = [write_event(pg_url, table, aggregate, f"{n % 2}", "OrderShipped",
                         json.dumps({"n": n, "note": "tab\there, \"quoted\", ünïcode"}))
             for n in range(4, 7)]
    with postroom.Outbox(pg_url, kafka, table=table, routing="debezium") as outbox:
        assert outbox.payload_column == "jsonb"
        assert outbox.relay_once() == 7
        assert outbox.status().pending == 0
    payloads = stored_payloads(pg_url, table)
    got = consume(f"outbox.event.{aggregate}", 7)
    ids = [headers_of(m)["id"].decode() for m in got]
    assert sorted(ids) == sorted(before + after), "each row once: none lost, none twice"
    for m in got:
        event_id = headers_of(m)["id"].decode()
        assert m.value() == payloads[event_id], "the payload byte for byte"
        assert headers_of(m)["ce_id"].decode() == event_id
        assert m.key() in (b"0", b"1")
    for key in (b"0", b"1"):
        ns = [json.loads(m.value())["n"] for m in got if m.key() == key]
        assert ns == sorted(ns), "per-aggregate order"


@pytest.mark.postgres
@pytest.mark.kafka
@pytest.mark.parametrize("payload_type", ["jsonb", "json", "text", "bytea"])
def test_each_payload_column_type_is_published_byte_for_byte(
        pg_url: str, kafka: postroom.Broker, table: str, aggregate: str,
        payload_type: str) -> None:
    """jsonb as PostgreSQL returns it; json and text exactly as written (spacing, escapes);
    bytea raw. Relayed by the CLI with --routing debezium."""
    create_debezium_table(pg_url, table, payload=payload_type)
    document = '{"id": 1,   "path": "C:\\\\temp\\\\x", "line": "a\\nb", "ok": true}'
    payload: Any = document.encode() if payload_type == "bytea" else document
    event_id = write_event(pg_url, table, aggregate, "42", "OrderCreated", payload)
    binary = b"\x00\xff\\x01 not json"
    binary_id = (write_event(pg_url, table, aggregate, "42", "Blob", binary)
                 if payload_type == "bytea" else None)
    assert CliRunner().invoke(cli, ["outbox", "migrate", "--db", pg_url, "--table",
                                    table]).exit_code == 0
    relay = CliRunner().invoke(cli, ["outbox", "relay", "--db", pg_url, "--table", table,
                                     "--broker", kafka.url, "--routing", "debezium",
                                     "--idle-exit", "1", "--json"])
    assert relay.exit_code == 0, relay.output
    got = {headers_of(m)["id"].decode(): m for m in consume(f"outbox.event.{aggregate}",
                                                            2 if binary_id else 1)}
    expected = stored_payloads(pg_url, table)[event_id]
    if payload_type != "jsonb":
        assert expected == document.encode(), "json, text and bytea keep what was written"
    assert got[event_id].value() == expected
    assert got[event_id].key() == b"42"
    if binary_id:
        assert got[binary_id].value() == binary


@pytest.mark.postgres
@pytest.mark.kafka
def test_additional_fields_become_headers_and_the_route_by_field_picks_the_topic(
        pg_url: str, kafka: postroom.Broker, table: str, aggregate: str) -> None:
    """Debezium's table.fields.additional.placement (header placement, with and without an
    alias) and route.by.field; the `id` header comes with postroom's routing too."""
    create_debezium_table(pg_url, table, extra=", tenant varchar(64), traceid text")
    event_id = write_event(pg_url, table, "ignored", "7", aggregate, '{"a": 1}',
                           tenant="acme", traceid=None)
    with postroom.Outbox(pg_url, kafka, table=table, routing="debezium", migrate=True,
                         route_by_field="type",
                         additional_headers="type:header:eventType,tenant:header,"
                                            "traceid:header") as outbox:
        assert outbox.relay_once() == 1
    (m,) = consume(f"outbox.event.{aggregate}", 1)
    headers = headers_of(m)
    assert headers["id"] == event_id.encode()
    assert headers["eventType"] == aggregate.encode()
    assert headers["tenant"] == b"acme"
    assert "traceid" not in headers, "a NULL column adds no header"
    with pytest.raises(errors.ConfigurationError, match="nosuchcolumn"):
        postroom.Outbox(pg_url, kafka, table=table, additional_headers={"nosuchcolumn": "x"})
    with pytest.raises(errors.ConfigurationError, match="envelope"):
        postroom.Outbox(pg_url, kafka, table=table, additional_headers="tenant:envelope")


@pytest.mark.postgres
@pytest.mark.kafka
def test_postroom_add_writes_into_an_adopted_jsonb_table_and_routing_keeps_the_id_header(
        pg_url: str, kafka: postroom.Broker, table: str, aggregate: str) -> None:
    """postroom's own writer into Debezium's layout (uuid id, jsonb payload); the default
    routing (topic = aggregatetype) also carries the `id` header."""
    import psycopg

    create_debezium_table(pg_url, table)
    kafka.create_topic(aggregate, 1)
    try:
        with postroom.Outbox(pg_url, kafka, table=table, migrate=True) as outbox:
            with psycopg.connect(pg_url) as conn:
                event_id = outbox.add(conn, postroom.Event(type="OrderCreated", source="/shop",
                                                           data={"total": 42}),
                                      aggregate_type=aggregate, aggregate_id="9")
            assert outbox.relay_once() == 1
        (m,) = consume(aggregate, 1)
        assert headers_of(m)["id"] == event_id.encode()
        assert json.loads(m.value()) == {"total": 42}
    finally:
        kafka.delete_topic(aggregate)


def test_a_topic_template_with_an_unknown_placeholder_is_refused(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'shop.db'}"
    with pytest.raises(errors.ConfigurationError, match=r"\$\{aggregateType\}, \$\{unclosed"):
        postroom.Outbox(db, topic_template="events.${aggregateType}.${routedByValue}.${unclosed")
    relay = CliRunner().invoke(cli, ["outbox", "relay", "--db", db, "--topic-template",
                                     "outbox.${type}", "--idle-exit", "0.1"])
    assert relay.exit_code == 1 and "${type}" in relay.output
    with pytest.raises(errors.ConfigurationError, match="both set"):
        postroom.Outbox(db, topic="orders", routing="debezium")
    assert not (tmp_path / "shop.db").exists(), "refused before the database was touched"


def test_debezium_routing_on_sqlite_and_the_embedded_broker(embedded: postroom.Broker,
                                                           tmp_path: Path) -> None:
    """The fast tier: the same routing without services; a template without placeholders is
    a fixed topic; a row's own topic column still wins."""
    path = tmp_path / "shop.db"
    embedded.create_topic("outbox.event.order", 1)
    embedded.create_topic("audit", 1)
    with postroom.Outbox(f"sqlite:///{path}", embedded, routing="debezium") as outbox:
        with sqlite3.connect(path) as conn:
            routed = outbox.add(conn, postroom.Event(type="t", source="/s", data=b"{}"),
                                aggregate_type="order", aggregate_id="1")
            own = outbox.add(conn, postroom.Event(type="t", source="/s", data=b"{}"),
                             aggregate_type="order", aggregate_id="1", topic="audit")
        assert outbox.relay_once() == 2
    with embedded.consumer(unique("r"), "outbox.event.order") as c:
        (m,) = list(c.messages(idle_timeout=2, limit=2))
    assert dict(m.headers)["id"] == routed.encode()
    with embedded.consumer(unique("r"), "audit") as c:
        assert [dict(x.headers)["id"] for x in c.messages(idle_timeout=2, limit=2)] == [
            own.encode()]


def test_a_sqlite_table_with_the_event_columns_only_is_refused_naming_them(
        tmp_path: Path) -> None:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE outbox (id TEXT, aggregatetype TEXT, aggregateid TEXT, "
                     "type TEXT, payload TEXT)")
    with pytest.raises(errors.ConfigurationError, match=RELAY_COLUMNS):
        postroom.Outbox(f"sqlite:///{path}", table="outbox")
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (id TEXT, total INTEGER)")
    with pytest.raises(errors.ConfigurationError, match="not an outbox table.*aggregatetype"):
        postroom.Outbox(f"sqlite:///{path}", table="orders")


@pytest.mark.postgres
def test_a_table_dropped_and_created_again_under_its_name_loses_no_row(
        embedded: postroom.Broker, pg_url: str, table: str) -> None:
    """A new table numbers its rows from 1: the cursor the dropped one left behind in
    postroom_outbox_relays must not pass over them."""
    import psycopg

    embedded.create_topic("orders", 1)
    with postroom.Outbox(pg_url, embedded, table=table, topic="orders") as outbox:
        with psycopg.connect(pg_url) as conn:
            for n in range(3):
                outbox.add(conn, postroom.Event(type="t", source="/s", data={"n": n}),
                           aggregate_type="order", aggregate_id="a")
        assert outbox.relay_once() == 3
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP TABLE "{table}"')
    with postroom.Outbox(pg_url, embedded, table=table, topic="orders") as outbox:
        with psycopg.connect(pg_url) as conn:
            outbox.add(conn, postroom.Event(type="t", source="/s", data={"n": 3}),
                       aggregate_type="order", aggregate_id="a")
        assert outbox.relay_once() == 1
    with embedded.consumer(unique("r"), "orders") as c:
        got = [m.event().json()["n"] for m in c.messages(idle_timeout=2, limit=5)]
    assert got == [0, 1, 2, 3]
