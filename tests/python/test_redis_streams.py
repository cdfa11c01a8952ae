"""Redis Streams through the same Python API as Kafka (real Redis, POSTROOM_REDIS_URL):
producer, consumer group, pending entries, the processor with dead letters and retry
streams, and clear errors for bad URLs."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import pytest

import postroom
from postroom.errors import ConfigurationError, TransportError, UsageError
from postroom.redis import RedisBroker

from .conftest import require_env, unique

pytestmark = pytest.mark.redis


@pytest.fixture
def broker() -> RedisBroker:
    b = postroom.connect(require_env("POSTROOM_REDIS_URL"))
    assert isinstance(b, RedisBroker)
    return b


@pytest.fixture
def stream(broker: RedisBroker) -> Iterator[str]:
    name = unique("pystream")
    yield name
    for s in (name, name + ".dlq", name + ".retry.1"):
        broker.delete_topic(s)


def events(n: int, prefix: str = "ev") -> list[tuple[str, postroom.Event]]:
    return [(f"key-{i % 3}", postroom.Event(type="order", source="/test", id=f"{prefix}-{i}",
                                            data={"n": i})) for i in range(n)]


def test_events_round_trip_in_both_modes_with_key_and_headers(broker: RedisBroker,
                                                              stream: str) -> None:
    broker.create_topic(stream)
    assert broker.topic(stream) is not None
    with broker.producer() as producer:
        binary = producer.send(postroom.Event(type="t", source="/s", id="b-1", data={"x": 1}),
                               topic=stream, key="k", headers=[("trace", b"\x00\x01")])
        producer.send(postroom.Event(type="t", source="/s", id="s-1", data="text"),
                      topic=stream, mode="structured")
        producer.send(b"raw", topic=stream)
    assert binary.ok and binary.id
    with broker.consumer(unique("g"), stream) as consumer:
        got = list(consumer.messages(idle_timeout=0.5))
    assert [m.position for m in got][0] == binary.id
    assert got[0].key == b"k" and got[0].header("trace") == b"\x00\x01"
    assert got[0].header("ce_id") == b"b-1", "binary mode: ce_ attributes are fields"
    assert got[0].event().data == b'{"x":1}'
    assert got[1].event().id == "s-1"
    assert got[1].header("content-type").startswith(b"application/cloudevents+json")  # type: ignore[union-attr]
    assert got[2].value == b"raw" and not got[2].is_event
    assert all(m.delivery_count == 1 and m.partition == 0 for m in got)


def test_batch_add_and_read_then_only_undone_entries_come_back(broker: RedisBroker,
                                                               stream: str) -> None:
    with broker.producer() as producer:
        result = producer.send_batch([str(i).encode() for i in range(100)], topic=stream)
    assert len(result) == 100 and result.failed == 0
    group = unique("g")
    with broker.consumer(group, stream, consumer_name="one") as consumer:
        batch = consumer.poll_batch(100, timeout=5.0)
        assert len(batch) == 100
        for m in batch[:60]:
            consumer.mark_done(m)
        assert consumer.commit() == [("*", 0, 60)]
    assert broker.groups(stream)[0]["pending"] == 40
    with broker.consumer(group, stream, consumer_name="one") as consumer:
        again = list(consumer.messages(idle_timeout=0.5))
        assert [int(m.value) for m in again] == list(range(60, 100))
        assert all(m.delivery_count == 2 for m in again)
        for m in again:
            consumer.mark_done(m)
    assert broker.pending(stream, group) == []


def test_batches_sent_without_waiting_are_reported_when_waited_for(broker: RedisBroker,
                                                                   stream: str) -> None:
    with broker.producer() as producer:
        batches = [producer.send_batch([f"{b}-{i}".encode() for i in range(1500)], topic=stream,
                                       wait=False) for b in range(3)]
        assert producer.in_flight == 4500
        assert producer.wait(batches[1]) is True
        assert batches[0].done and batches[1].done and not batches[2].done
        assert producer.in_flight == 1500
        last = batches[2]
    assert last.done, "closing reports what was in flight"
    ids = [r.id for b in batches for r in b]
    assert all(b.failed == 0 for b in batches)
    assert ids == sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-"))), "in order"
    assert broker.length(stream) == 4500


def test_a_dead_members_entries_are_claimed_by_another(broker: RedisBroker, stream: str) -> None:
    with broker.producer() as producer:
        producer.send_batch([b"a", b"b"], topic=stream)
    group = unique("g")
    dead = broker.consumer(group, stream, consumer_name="dead")
    assert len(dead.poll_batch(10, timeout=5.0)) == 2  # never acknowledged
    with broker.consumer(group, stream, consumer_name="alive", claim_min_idle=0.3,
                         claim_interval=0.1) as consumer:
        got = list(consumer.messages(idle_timeout=1.5))
        assert sorted(m.value for m in got) == [b"a", b"b"]
        assert consumer.counters["claimed"] == 2
        for m in got:
            consumer.mark_done(m)
    assert broker.pending(stream, group) == []


def test_processor_dead_letters_the_poison_and_applies_the_rest_once(broker: RedisBroker,
                                                                     stream: str) -> None:
    items = events(20)
    items.insert(7, ("key-1", postroom.Event(type="poison", source="/test", id="poison-1")))
    with broker.producer() as producer:
        producer.send_batch(items, topic=stream)
    applied: Counter[str] = Counter()

    def handle(event: postroom.Event, context: postroom.HandlerContext) -> None:
        if event.type == "poison":
            raise ValueError("cannot handle poison")
        applied[event.id] += 1

    with postroom.Processor(broker, name=unique("p"), topics=stream, handler=handle,
                            retry=postroom.RetryPolicy(max_attempts=2, initial_delay=0.01)) as p:
        counters = p.run(idle_timeout=1.0)
    assert counters.processed == 20 and counters.dead_lettered == 1
    assert set(applied) == {f"ev-{i}" for i in range(20)} and set(applied.values()) == {1}
    [letter] = broker.range(stream + ".dlq")
    assert letter.header("postroom-dlt-original-topic") == stream.encode()
    [poison] = [m for m in broker.range(stream) if m.header("ce_id") == b"poison-1"]
    assert letter.header("postroom-dlt-original-offset") == poison.id.encode(), \
        "on Redis the original offset is the entry id"
    assert letter.header("postroom-dlt-error-type") == b"ValueError"
    assert letter.event().id == "poison-1"
    assert broker.groups(stream)[0]["pending"] == 0


def test_retry_streams_keep_the_stream_flowing(broker: RedisBroker, stream: str) -> None:
    with broker.producer() as producer:
        producer.send_batch(events(5), topic=stream)
    attempts: Counter[str] = Counter()
    lock = threading.Lock()

    def handle(event: postroom.Event, context: postroom.HandlerContext) -> None:
        with lock:
            attempts[event.id] += 1
            if event.id == "ev-1" and attempts[event.id] < 2:
                raise RuntimeError("flaky")

    with postroom.Processor(broker, name=unique("p"), topics=stream, handler=handle,
                            retry=postroom.RetryPolicy(max_attempts=1),
                            retry_topics=[0.3]) as p:
        counters = p.run(idle_timeout=2.0)
    assert counters.processed == 5 and counters.retry_topic_sends == 1
    assert attempts["ev-1"] == 2
    assert broker.length(stream + ".retry.1") == 1


def test_bad_urls_and_unreachable_servers_say_what_to_do() -> None:
    with pytest.raises(TransportError, match="is Redis running"):
        postroom.connect("redis://127.0.0.1:1/0").ping()
    with pytest.raises(ConfigurationError, match="expected"):
        postroom.connect("redis://")
    with pytest.raises(ConfigurationError, match="no client properties"):
        postroom.connect("redis://127.0.0.1:6379/0", properties={"acks": "all"})
    redis = postroom.connect("redis://127.0.0.1:6379/0")
    with pytest.raises(ConfigurationError, match="no librdkafka properties"):
        redis.producer(properties={"linger.ms": "5"})
    with pytest.raises(ConfigurationError, match="consumer_name="):
        redis.consumer("g", properties={"fetch.min.bytes": "1"})
    url = require_env("POSTROOM_REDIS_URL")
    host_port = url[len("redis://"):]
    with pytest.raises(ConfigurationError, match="password"):
        postroom.connect(f"redis://:wrong@{host_port}").ping()


def test_kafka_only_calls_explain_the_redis_way(broker: RedisBroker, stream: str) -> None:
    with pytest.raises(UsageError, match="entries are named by id"):
        broker.watermarks(stream)
    with broker.consumer(unique("g"), stream) as consumer, \
            pytest.raises(UsageError, match="redeliver_from"):
        consumer.seek(stream, 0, 5)


def test_trimming_while_entries_are_pending_is_counted_and_reported(broker: RedisBroker,
                                                                    stream: str) -> None:
    with broker.producer() as producer:
        producer.send_batch([str(i).encode() for i in range(10)], topic=stream)
    group = unique("g")
    holder = broker.consumer(group, stream, consumer_name="holder")
    held = holder.poll_batch(10, timeout=5.0)  # pending, never acknowledged
    assert len(held) == 10
    with broker.producer(maxlen=5) as producer:  # XADD MAXLEN ~ 5 trims the oldest
        producer.send_batch([b"x"] * 200, topic=stream)
    assert broker.length(stream) < 200
    with broker.consumer(group, stream, consumer_name="holder") as consumer:
        consumer.poll_batch(500, timeout=2.0)
        counters = consumer.counters
    assert counters["deleted_while_pending"] == 10, counters
    still_pending = {p["id"] for p in broker.pending(stream, group)}
    assert not still_pending & {m.id for m in held}, "the trimmed entries are not left stuck"


def test_lag_and_pending_through_the_broker_lag_api(broker: RedisBroker, stream: str) -> None:
    with broker.producer() as producer:
        producer.send_batch([str(i).encode() for i in range(8)], topic=stream)
    group = unique("g")
    with broker.consumer(group, stream) as consumer:
        got = consumer.poll_batch(3, timeout=5.0)
        consumer.mark_done(got[0])
        consumer.commit()
    [row] = broker.lag(group, [stream])
    assert (row["topic"], row["lag"], row["pending"]) == (stream, 5, 2)


def test_processor_with_lanes_over_two_streams_applies_each_event_once(
        broker: RedisBroker, stream: str) -> None:
    second = stream + "-b"
    with broker.producer() as producer:
        producer.send_batch(events(30, "a"), topic=stream)
        producer.send_batch(events(30, "b"), topic=second)
    applied: Counter[str] = Counter()
    order: dict[str, list[int]] = {stream: [], second: []}
    lock = threading.Lock()

    def handle(event: postroom.Event, context: postroom.HandlerContext) -> None:
        with lock:
            applied[event.id] += 1
            order[context.message.topic].append(int(event.id.split("-")[1]))

    try:
        with postroom.Processor(broker, name=unique("p"), topics=[stream, second],
                                handler=handle, concurrency=2) as processor:
            counters = processor.run(idle_timeout=1.5)
        assert counters.processed == 60 and set(applied.values()) == {1}
        assert order[stream] == sorted(order[stream]) and order[second] == sorted(order[second])
    finally:
        broker.delete_topic(second)
