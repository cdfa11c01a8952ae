"""postroom.Processor: retries, dead letters, dedupe and bad input, on the embedded broker
and the real one."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

import postroom
from postroom import errors
from postroom.stores import MemoryStore, SQLiteStore

from .conftest import unique

pytestmark = pytest.mark.contract

FAST = postroom.RetryPolicy(max_attempts=3, initial_delay=0.05, max_delay=0.2)


@pytest.fixture
def topics(broker: postroom.Broker):
    name = unique("proc")
    broker.create_topic(name, 1)
    broker.create_topic(name + ".dlq", 1)
    yield name
    if not broker.is_embedded:
        broker.delete_topic(name)
        broker.delete_topic(name + ".dlq")


def send_events(broker: postroom.Broker, topic: str, ids: list[str]) -> None:
    events = [postroom.Event(type="order.placed", source="/test", id=i, data={"id": i})
              for i in ids]
    with broker.producer() as producer:
        producer.send_batch([("k", e) for e in events], topic=topic)


def dead_letters(broker: postroom.Broker, topic: str, n: int) -> list[postroom.Message]:
    with broker.consumer(unique("dlq-reader"), topic + ".dlq") as consumer:
        return list(consumer.messages(idle_timeout=5.0, limit=n))


def run_until_finished(processor: postroom.Processor, n: int, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while processor.counters.finished < n and time.monotonic() < deadline:
        processor.run_once(0.1)
    assert processor.counters.finished == n, processor.counters


def test_transient_failures_succeed_within_the_attempt_limit(broker: postroom.Broker,
                                                             topics: str) -> None:
    send_events(broker, topics, ["e1"])
    calls: list[float] = []

    def handler(event: postroom.Event, context: postroom.HandlerContext) -> None:
        calls.append(time.monotonic())
        assert context.attempt == len(calls)
        assert context.message.topic == topics
        if len(calls) < 3:
            raise ConnectionError("database blip")

    policy = postroom.RetryPolicy(max_attempts=4, initial_delay=0.1, multiplier=2.0,
                                  max_delay=1.0, jitter=0.2)
    with postroom.Processor(broker, name=unique("p"), topics=topics, handler=handler,
                            retry=policy) as processor:
        run_until_finished(processor, 1)
        counters = processor.counters
    assert (counters.processed, counters.retried, counters.dead_lettered) == (1, 2, 0)
    first_gap, second_gap = calls[1] - calls[0], calls[2] - calls[1]
    assert 0.08 <= first_gap <= 0.12 + 0.15
    assert 0.16 <= second_gap <= 0.24 + 0.15


def test_poison_event_is_dead_lettered_and_the_partition_keeps_flowing(
        broker: postroom.Broker, topics: str) -> None:
    ids = [f"e{i}" for i in range(8)]
    send_events(broker, topics, ids)
    applied: list[str] = []

    def handler(event: postroom.Event, context: postroom.HandlerContext) -> None:
        if event.id == "e2":
            raise ValueError("amount must be positive")
        applied.append(event.id)

    with postroom.Processor(broker, name="billing", group=unique("g"), topics=topics,
                            handler=handler, retry=FAST) as processor:
        run_until_finished(processor, 8)
        assert processor.counters.dead_lettered == 1
    assert applied == [i for i in ids if i != "e2"]
    (letter,) = dead_letters(broker, topics, 1)
    assert letter.event().id == "e2" and letter.key == b"k"
    headers = dict(letter.headers)
    assert headers["postroom-dlt-reason"] == b"retries-exhausted"
    assert headers["postroom-dlt-error-type"] == b"ValueError"
    assert headers["postroom-dlt-error-message"] == b"amount must be positive"
    assert b"Traceback" in headers["postroom-dlt-error-stack"]
    assert b"raise ValueError" in headers["postroom-dlt-error-stack"]
    assert headers["postroom-dlt-original-topic"] == topics.encode()
    assert headers["postroom-dlt-original-partition"] == b"0"
    assert headers["postroom-dlt-original-offset"] == b"2"
    assert headers["postroom-dlt-processor"] == b"billing"
    assert headers["postroom-dlt-attempts"] == b"3"
    for name in ("original-timestamp", "group", "first-failure", "last-failure"):
        assert headers[f"postroom-dlt-{name}"], name
    assert headers["ce_id"] == b"e2", "the original headers are kept"


def test_retry_topics_keep_the_partition_flowing(broker: postroom.Broker, topics: str) -> None:
    for level in (1, 2):
        broker.create_topic(f"{topics}.retry.{level}", 1)
    send_events(broker, topics, [f"e{i}" for i in range(6)])
    calls: dict[str, list[tuple[float, int]]] = {}

    def handler(event: postroom.Event, context: postroom.HandlerContext) -> None:
        calls.setdefault(event.id, []).append((time.monotonic(), context.attempt))
        if event.id == "e1":
            raise ValueError("always fails")
        if event.id == "e2" and len(calls["e2"]) == 1:
            raise ConnectionError("fails once")

    try:
        with postroom.Processor(broker, name=unique("p"), group=unique("g"), topics=topics,
                                handler=handler, retry=postroom.RetryPolicy(max_attempts=1),
                                retry_topics=[0.5, 1.0]) as processor:
            run_until_finished(processor, 6 + 3)  # 6 deliveries + 3 from retry topics
            counters = processor.counters
    finally:
        if not broker.is_embedded:
            for level in (1, 2):
                broker.delete_topic(f"{topics}.retry.{level}")
    assert (counters.processed, counters.dead_lettered, counters.retry_topic_sends) == (5, 1, 3)
    assert [attempt for _, attempt in calls["e1"]] == [1, 2, 3]
    assert calls["e5"][0][0] < calls["e1"][1][0], "the partition did not wait for the retry"
    assert calls["e1"][1][0] - calls["e1"][0][0] >= 0.5
    assert calls["e1"][2][0] - calls["e1"][1][0] >= 1.0
    (letter,) = dead_letters(broker, topics, 1)
    headers = dict(letter.headers)
    assert headers["postroom-dlt-original-topic"] == topics.encode()
    assert headers["postroom-dlt-attempts"] == b"3"


def test_concurrency_handles_partitions_at_once_in_order(broker: postroom.Broker) -> None:
    topic = unique("lanes")
    broker.create_topic(topic, 4)
    broker.create_topic(topic + ".dlq", 1)
    events = [postroom.Event(type="t", source="/test", id=f"e{i:03d}") for i in range(80)]
    with broker.producer() as producer:
        producer.send_batch([(f"key-{i % 8}", e) for i, e in enumerate(events)], topic=topic)
    lock = threading.Lock()
    active, most_active = 0, 0
    seen: dict[str, list[str]] = {}

    def handler(event: postroom.Event, context: postroom.HandlerContext) -> None:
        nonlocal active, most_active
        with lock:
            active += 1
            most_active = max(most_active, active)
        time.sleep(0.01)  # waiting on I/O: the GIL is free for the other lanes
        with lock:
            active -= 1
            seen.setdefault(context.message.key.decode(), []).append(event.id)

    try:
        with postroom.Processor(broker, name=unique("p"), topics=topic, handler=handler,
                                concurrency=4, batch_size=5) as processor:
            run_until_finished(processor, 80)
    finally:
        if not broker.is_embedded:
            broker.delete_topic(topic)
            broker.delete_topic(topic + ".dlq")
    assert most_active >= 2, "partitions were handled at the same time"
    assert sum(len(ids) for ids in seen.values()) == 80
    for ids in seen.values():
        assert ids == sorted(ids), "per-key order holds"


def test_non_retryable_errors_skip_the_retries(broker: postroom.Broker, topics: str) -> None:
    send_events(broker, topics, ["a", "b", "c"])
    calls: dict[str, int] = {}

    class InvalidOrder(Exception):
        pass

    def handler(event: postroom.Event, context: postroom.HandlerContext) -> None:
        calls[event.id] = calls.get(event.id, 0) + 1
        if event.id == "a":
            raise errors.NonRetryableError("rejected by a business rule")
        if event.id == "b":
            raise InvalidOrder("never valid")

    policy = postroom.RetryPolicy(max_attempts=5, initial_delay=0.05,
                                  non_retryable=(InvalidOrder,))
    with postroom.Processor(broker, name=unique("p"), topics=topics, handler=handler,
                            retry=policy) as processor:
        run_until_finished(processor, 3)
    assert calls == {"a": 1, "b": 1, "c": 1}
    letters = dead_letters(broker, topics, 2)
    assert [dict(m.headers)["postroom-dlt-reason"] for m in letters] == [b"non-retryable"] * 2
    assert dict(letters[1].headers)["postroom-dlt-error-type"].endswith(b"InvalidOrder")


def test_bad_input_is_dead_lettered_with_a_reason(broker: postroom.Broker, topics: str) -> None:
    with broker.producer() as producer:
        producer.send(b"plain bytes, not an event", topic=topics, key="k")
        producer.send(b'{"specversion": "1.0", "id": ', topic=topics, key="k",
                      headers=[("content-type", b"application/cloudevents+json")])
        producer.send(postroom.Event(type="t", source="/s", data=b"x" * 5000), topic=topics,
                      key="k")
        producer.send(postroom.Event(type="t", source="/s", id="fine"), topic=topics, key="k")
    handled: list[str] = []
    with postroom.Processor(broker, name=unique("p"), topics=topics, max_payload_bytes=4096,
                            handler=lambda e, c: handled.append(e.id)) as processor:
        run_until_finished(processor, 4)
    assert handled == ["fine"]
    reasons = [dict(m.headers)["postroom-dlt-reason"] for m in dead_letters(broker, topics, 3)]
    assert reasons == [b"undecodable", b"undecodable", b"too-large"]


def test_redelivered_events_are_applied_once(broker: postroom.Broker, topics: str) -> None:
    send_events(broker, topics, ["x", "y"])
    send_events(broker, topics, ["x", "y", "z"])
    effects: list[str] = []
    store = MemoryStore()
    with postroom.Processor(broker, name="once", group=unique("g"), topics=topics, store=store,
                            handler=lambda e, c: effects.append(e.id)) as processor:
        run_until_finished(processor, 5)
        assert processor.counters.duplicates == 2
    assert effects == ["x", "y", "z"]
    assert store.contains("once", "x") and not store.contains("other", "x")


def test_sqlite_store_commits_effects_with_the_dedupe_mark(broker: postroom.Broker, topics: str,
                                                           tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "effects.db")
    send_events(broker, topics, [f"e{i}" for i in range(6)])
    send_events(broker, topics, ["e0", "e1"])  # duplicates
    attempts: dict[str, int] = {}

    def handler(event: postroom.Event, context: postroom.HandlerContext) -> None:
        context.execute("CREATE TABLE IF NOT EXISTS ledger (event_id TEXT, amount INTEGER)")
        context.execute("INSERT INTO ledger VALUES (?, ?)", (event.id, 10))
        attempts[event.id] = attempts.get(event.id, 0) + 1
        if attempts[event.id] == 1:
            raise TimeoutError("crashed after writing")  # the write must roll back

    with postroom.Processor(broker, name=unique("p"), topics=topics, store=store,
                            handler=handler, retry=FAST) as processor:
        run_until_finished(processor, 8)
        assert processor.counters.duplicates == 2

    import sqlite3

    rows = sqlite3.connect(tmp_path / "effects.db").execute(
        "SELECT event_id, COUNT(*) FROM ledger GROUP BY event_id ORDER BY event_id").fetchall()
    assert rows == [(f"e{i}", 1) for i in range(6)]


def test_memory_store_has_no_sql_and_says_so(broker: postroom.Broker, topics: str) -> None:
    send_events(broker, topics, ["e"])
    with postroom.Processor(broker, name=unique("p"), topics=topics, retry=FAST,
                            handler=lambda e, c: c.execute("SELECT 1")) as processor:
        run_until_finished(processor, 1)
        assert processor.counters.dead_lettered == 1
        assert processor.counters.failed_attempts == 1, "a usage error is not retried"
    (letter,) = dead_letters(broker, topics, 1)
    assert b"use a SQL store" in dict(letter.headers)["postroom-dlt-error-message"]


def test_redis_commands_need_the_redis_store_and_real_arguments(broker: postroom.Broker,
                                                                topics: str) -> None:
    send_events(broker, topics, ["e1", "e2"])
    seen: list[str] = []

    def handler(event: postroom.Event, context: postroom.HandlerContext) -> None:
        try:
            context.redis_command("SET", "k", None)
        except TypeError as error:
            seen.append(str(error))
        context.redis_command("INCR", "k")  # the memory store refuses: a usage error

    with postroom.Processor(broker, name=unique("p"), topics=topics, retry=FAST,
                            handler=handler) as processor:
        run_until_finished(processor, 2)
        assert processor.counters.dead_lettered == 2
    assert seen == ["a Redis command argument cannot be None"] * 2
    letters = dead_letters(broker, topics, 2)
    assert all(b"only the Redis store" in dict(m.headers)["postroom-dlt-error-message"]
               for m in letters)


def test_idempotency_key_from_a_header_or_a_function(broker: postroom.Broker,
                                                     topics: str) -> None:
    with broker.producer() as producer:
        for _ in range(3):  # three events (fresh ids) carrying the same business key
            producer.send(postroom.Event(type="t", source="/s"), topic=topics, key="k",
                          headers=[("order-id", b"order-1")])
    effects: list[str] = []
    with postroom.Processor(broker, name=unique("p"), topics=topics, key_header="order-id",
                            handler=lambda e, c: effects.append(e.id)) as processor:
        run_until_finished(processor, 3)
        assert processor.counters.duplicates == 2
    assert len(effects) == 1


@pytest.mark.unit
def test_configuration_errors_are_clear(tmp_path: Path) -> None:
    broker = postroom.connect("embedded://config-errors")
    broker.create_topic("t", 1)
    with pytest.raises(errors.ConfigurationError, match="name is required"):
        postroom.Processor(broker, name="", topics="t", handler=lambda e, c: None)
    with pytest.raises(errors.ConfigurationError, match="max_attempts"):
        postroom.Processor(broker, name="p", topics="t", handler=lambda e, c: None,
                           retry=postroom.RetryPolicy(max_attempts=0))
    with pytest.raises(errors.ConfigurationError, match="not allowed"):
        SQLiteStore(tmp_path / "x.db", table='x"; DROP TABLE y; --')
    assert not (tmp_path / "x.db").exists()


@pytest.mark.postgres
def test_postgres_store_commits_effects_with_the_dedupe_mark(broker: postroom.Broker,
                                                             topics: str) -> None:
    from postroom.stores import PostgresStore

    from .conftest import require_env

    url = require_env("POSTROOM_PG_URL")
    table = unique("marks").replace("-", "_")
    ledger = table + "_ledger"
    store = PostgresStore(url, table=table)
    send_events(broker, topics, [f"e{i}" for i in range(6)])
    send_events(broker, topics, ["e0", "e1"])  # duplicates
    attempts: dict[str, int] = {}

    def handler(event: postroom.Event, context: postroom.HandlerContext) -> None:
        context.execute(f"CREATE TABLE IF NOT EXISTS {ledger} (event_id text, amount int)")
        context.execute(f"INSERT INTO {ledger} VALUES ($1, $2)", (event.id, 10))
        attempts[event.id] = attempts.get(event.id, 0) + 1
        if attempts[event.id] == 1:
            raise TimeoutError("crashed after writing")

    with postroom.Processor(broker, name=unique("p"), topics=topics, store=store,
                            handler=handler, retry=FAST) as processor:
        run_until_finished(processor, 8)
        assert processor.counters.duplicates == 2

    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT event_id, COUNT(*) FROM {ledger} GROUP BY event_id "
                            "ORDER BY event_id").fetchall()
        conn.execute(f"DROP TABLE {ledger}")
        conn.execute(f"DROP TABLE {table}")
    assert rows == [(f"e{i}", 1) for i in range(6)]


@pytest.mark.redis
def test_redis_store_skips_redelivered_events(broker: postroom.Broker, topics: str) -> None:
    from postroom.stores import RedisStore

    from .conftest import require_env

    store = RedisStore(require_env("POSTROOM_REDIS_URL"), retention=3600,
                       prefix=unique("pytest") + ":")
    send_events(broker, topics, ["r1", "r2", "r3"])
    send_events(broker, topics, ["r1", "r3"])
    effects: list[str] = []
    attempts: dict[str, int] = {}

    def handler(event: postroom.Event, context: postroom.HandlerContext) -> None:
        attempts[event.id] = attempts.get(event.id, 0) + 1
        if event.id == "r2" and attempts["r2"] == 1:
            raise ConnectionError("flaky downstream")  # the claim is released, then retried
        effects.append(event.id)

    with postroom.Processor(broker, name="redis-dedupe", group=unique("g"), topics=topics,
                            store=store, handler=handler, retry=FAST) as processor:
        run_until_finished(processor, 5)
        assert processor.counters.duplicates == 2
    assert effects == ["r1", "r2", "r3"]
    assert store.contains("redis-dedupe", "r2")


def test_redis_effects_queued_in_the_transaction_apply_once_with_the_mark(
        broker: postroom.Broker, topics: str) -> None:
    import redis

    from postroom.stores import RedisStore

    from .conftest import require_env

    url = require_env("POSTROOM_REDIS_URL")
    prefix = unique("pytest") + ":"
    store = RedisStore(url, retention=3600, prefix=prefix)
    send_events(broker, topics, ["q1", "q2", "q3"])
    send_events(broker, topics, ["q2"])
    failed_once: set[str] = set()

    def handler(event: postroom.Event, context: postroom.HandlerContext) -> None:
        context.redis_command("HINCRBY", prefix + "totals", event.id, 1)
        if event.id == "q2" and "q2" not in failed_once:
            failed_once.add("q2")
            raise ConnectionError("fails after queueing its effect: the effect must not run")
        context.redis_command("RPUSH", prefix + "log", event.id.encode())

    with postroom.Processor(broker, name="redis-queued", group=unique("g"), topics=topics,
                            store=store, handler=handler, retry=FAST) as processor:
        run_until_finished(processor, 4)
        assert processor.counters.duplicates == 1
        assert processor.counters.retried == 1
    client = redis.Redis.from_url(url)
    assert client.hgetall(prefix + "totals") == {b"q1": b"1", b"q2": b"1", b"q3": b"1"}
    assert client.lrange(prefix + "log", 0, -1) == [b"q1", b"q2", b"q3"]


def test_flood_guard_holds_events_during_an_outage(broker: postroom.Broker, topics: str) -> None:
    send_events(broker, topics, [f"f{i}" for i in range(10)])
    outage = threading.Event()
    outage.set()
    applied: list[str] = []

    def handler(event: postroom.Event, context: postroom.HandlerContext) -> None:
        if outage.is_set():
            raise ConnectionError("payments API down")
        applied.append(event.id)

    guard = postroom.FloodGuard(max_failure_ratio=0.5, window=6, min_events=4, pause=0.2)
    with postroom.Processor(broker, name=unique("p"), topics=topics, handler=handler,
                            retry=postroom.RetryPolicy(max_attempts=1),
                            flood_guard=guard) as processor:
        dead_during_outage: list[int] = []

        def end_outage_after_two_pauses() -> None:
            deadline = time.monotonic() + 60
            while processor.counters.flood_pauses < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            dead_during_outage.append(processor.counters.dead_lettered)
            outage.clear()

        watcher = threading.Thread(target=end_outage_after_two_pauses)
        watcher.start()
        run_until_finished(processor, 10)
        watcher.join()
        counters = processor.counters
    assert dead_during_outage == [3], "dead letters stop once the failure ratio trips"
    assert counters.dead_lettered == 3 and counters.flood_pauses >= 2
    assert applied == [f"f{i}" for i in range(3, 10)]


@pytest.mark.unit
def test_retention_purges_old_marks() -> None:
    broker = postroom.connect(f"embedded://{unique('retention')}")
    broker.create_topic("t", 1)
    store = MemoryStore()
    send_events(broker, "t", ["first"])
    with postroom.Processor(broker, name="p", topics="t", handler=lambda e, c: None,
                            store=store) as processor:
        run_until_finished(processor, 1)
        assert processor.counters.purged_marks == 0, "no retention: marks are kept"
    assert store.contains("p", "first")
    time.sleep(1.1)
    with postroom.Processor(broker, name="p2", topics="t", handler=lambda e, c: None,
                            store=store, retention=1.0) as processor:
        run_until_finished(processor, 1)
        assert processor.counters.purged_marks == 1
    assert not store.contains("p", "first"), "older than the retention: forgotten"
    assert store.contains("p2", "first")


def test_batch_handler_gets_the_fresh_events_of_a_batch_at_once(broker: postroom.Broker,
                                                                topics: str,
                                                                tmp_path: Path) -> None:
    """One call per polled batch, duplicates left out, the effect written once per batch in
    the batch's store transaction."""
    store = SQLiteStore(tmp_path / "effects.db")
    send_events(broker, topics, [f"e{i}" for i in range(40)])
    send_events(broker, topics, [f"e{i}" for i in range(10)])  # duplicates
    calls: list[list[str]] = []

    def apply_all(events: list[postroom.Event], context: postroom.BatchContext) -> None:
        assert [m.event().id for m in context.messages] == [e.id for e in events]
        assert context.attempt == 1
        calls.append([e.id for e in events])
        context.execute("CREATE TABLE IF NOT EXISTS ledger (event_id TEXT)")
        context.execute("INSERT INTO ledger SELECT value FROM json_each(?)",
                        (json.dumps([e.id for e in events]),))

    with postroom.Processor(broker, name=unique("p"), topics=topics, store=store,
                            batch_handler=apply_all) as processor:
        run_until_finished(processor, 50)
        assert (processor.counters.processed, processor.counters.duplicates) == (40, 10)
    assert [i for call in calls for i in call] == [f"e{i}" for i in range(40)], \
        "each event once, in order"
    assert len(calls) < 40 and max(len(c) for c in calls) > 1

    import sqlite3

    rows = sqlite3.connect(tmp_path / "effects.db").execute(
        "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM ledger").fetchone()
    assert rows == (40, 40)


def test_a_failing_batch_is_handled_one_event_at_a_time(broker: postroom.Broker,
                                                        topics: str) -> None:
    """The batch call fails on a poison event: the batch is handled again one event per
    call; the poison ends in the dead-letter topic, the others are applied once."""
    send_events(broker, topics, [f"e{i}" for i in range(6)])
    applied: list[str] = []
    calls: list[list[str]] = []

    def apply_all(events: list[postroom.Event], context: postroom.BatchContext) -> None:
        calls.append([e.id for e in events])
        if any(e.id == "e3" for e in events):
            raise ValueError("e3 cannot be applied")
        applied.extend(e.id for e in events)

    with postroom.Processor(broker, name=unique("p"), topics=topics, batch_handler=apply_all,
                            retry=FAST) as processor:
        run_until_finished(processor, 6)
        counters = processor.counters
    assert (counters.processed, counters.dead_lettered) == (5, 1)
    assert sorted(applied) == ["e0", "e1", "e2", "e4", "e5"]
    with_poison = [c for c in calls if "e3" in c]
    assert len(with_poison[0]) > 1, "the batch was tried whole first"
    assert with_poison[1:] == [["e3"]] * FAST.max_attempts, "then e3 alone, each attempt"
    (dead,) = dead_letters(broker, topics, 1)
    assert dead.event().id == "e3"
    headers = dict(dead.headers)
    assert headers["postroom-dlt-error-type"] == b"ValueError"
    assert b"e3 cannot be applied" in headers["postroom-dlt-error-stack"]


@pytest.mark.unit
def test_a_processor_takes_exactly_one_kind_of_handler() -> None:
    broker = postroom.connect("embedded://one-kind-of-handler")
    broker.create_topic("t", 1)
    with pytest.raises(errors.UsageError, match="either handler= .* or batch_handler="):
        postroom.Processor(broker, name="p", topics="t")
    with pytest.raises(errors.UsageError, match="either handler="):
        postroom.Processor(broker, name="p", topics="t", handler=lambda e, c: None,
                           batch_handler=lambda es, c: None)


@pytest.mark.redis
def test_batch_handler_with_the_redis_store_writes_one_effect_per_batch(
        broker: postroom.Broker, topics: str) -> None:
    """INCRBY once per batch, queued into the MULTI/EXEC of the batch's dedupe marks: the
    total counts each event once, redeliveries included."""
    import redis

    from postroom.stores import RedisStore

    from .conftest import require_env

    url = require_env("POSTROOM_REDIS_URL")
    prefix = unique("pytest") + ":"
    send_events(broker, topics, [f"r{i}" for i in range(30)])
    send_events(broker, topics, [f"r{i}" for i in range(5)])  # duplicates
    commands = 0

    def apply_all(events: list[postroom.Event], context: postroom.BatchContext) -> None:
        nonlocal commands
        commands += 1
        context.redis_command("INCRBY", prefix + "total", len(events))

    with postroom.Processor(broker, name="redis-batch", group=unique("g"), topics=topics,
                            store=RedisStore(url, retention=3600, prefix=prefix),
                            batch_handler=apply_all) as processor:
        run_until_finished(processor, 35)
        assert processor.counters.duplicates == 5
    assert redis.Redis.from_url(url).get(prefix + "total") == b"30"
    assert commands < 30
