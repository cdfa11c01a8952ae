"""The Python Kafka API, run against the embedded broker and the real one."""

from __future__ import annotations

import threading
from collections import defaultdict

import pytest

import postroom
from postroom import errors

from .conftest import unique

pytestmark = pytest.mark.contract


def consume(consumer: postroom.Consumer, n: int, timeout: float = 60.0) -> list[postroom.Message]:
    got: list[postroom.Message] = []
    for m in consumer.messages(idle_timeout=timeout, limit=n):
        got.append(m)
    return got


def test_event_round_trip_through_producer_and_consumer(broker: postroom.Broker,
                                                        topic: str) -> None:
    event = postroom.Event(type="order.created", source="/pytest", subject="o-1",
                           data={"total": 12.5}, extensions={"tenant": "acme"})
    with broker.producer() as producer:
        report = producer.send(event, topic=topic, key="customer-1")
        assert report.ok and report.offset >= 0 and report.persistence == "persisted"
        producer.send(event, topic=topic, key="customer-1", mode="structured")
    with broker.consumer(unique("g"), topic) as consumer:
        got = consume(consumer, 2)
    assert [m.event() for m in got] == [event, event]
    assert got[0].header("ce_id") == event.id.encode()
    assert got[0].header("content-type") == b"application/json"
    assert got[1].header("content-type").startswith(b"application/cloudevents+json")
    assert all(m.key == b"customer-1" and m.is_event for m in got)


def test_batch_send_reports_every_message_and_keeps_per_key_order(
        broker: postroom.Broker, topic: str) -> None:
    items = [(f"k{i % 7}", str(i).encode(), [("seq", str(i))]) for i in range(2000)]
    with broker.producer() as producer:
        result = producer.send_batch(items, topic=topic)
    assert len(result) == 2000 and result.failed == 0 and result.delivered == 2000
    partition_of: dict[str, int] = {}
    for (key, _, _), report in zip(items, result.reports):
        assert partition_of.setdefault(key, report.partition) == report.partition
    assert len(set(partition_of.values())) > 1

    with broker.consumer(unique("g"), topic) as consumer:
        got = consume(consumer, 2000)
    assert len(got) == 2000
    last: dict[bytes, int] = {}
    for m in got:
        seq = int(m.value)
        assert m.header("seq") == m.value
        assert seq > last.get(m.key, -1), f"per-key order violated for {m.key!r}"
        last[m.key] = seq


def test_batch_of_events_and_values(broker: postroom.Broker, topic: str) -> None:
    events = [postroom.Event(type="t", source="/s", data={"i": i}) for i in range(50)]
    with broker.producer() as producer:
        producer.send_batch(events, topic=topic, key="same")
        producer.send_batch([b"raw-1", "raw-2", bytearray(b"raw-3"), memoryview(b"raw-4")],
                            topic=topic, key="same")
    with broker.consumer(unique("g"), topic) as consumer:
        got = consume(consumer, 54)
    assert [m.event().json()["i"] for m in got[:50]] == list(range(50))
    assert [m.value for m in got[50:]] == [b"raw-1", b"raw-2", b"raw-3", b"raw-4"]


def test_commit_covers_only_what_is_done_and_resume_continues_there(
        broker: postroom.Broker) -> None:
    name = unique("resume")
    broker.create_topic(name, 1)
    group = unique("g")
    with broker.producer() as producer:
        producer.send_batch([str(i).encode() for i in range(20)], topic=name)
    with broker.consumer(group, name) as consumer:
        got = consume(consumer, 20)
        assert len(got) == 20
        for m in got[:5]:
            consumer.mark_done(m)
        consumer.mark_done(got[7])  # 5 and 6 are unfinished: commit stops at 5
        assert consumer.commit() == [(name, 0, 5)]
        assert consumer.outstanding == 14
        assert consumer.committed([(name, 0)]) == [(name, 0, 5)]
    with broker.consumer(group, name) as again:
        rest = consume(again, 15)
    assert [m.offset for m in rest] == list(range(5, 20))
    if not broker.is_embedded:
        broker.delete_topic(name)


def test_async_produce_with_delivery_callbacks(broker: postroom.Broker, topic: str) -> None:
    reports: list[postroom.DeliveryReport] = []
    with broker.producer() as producer:
        for i in range(10):
            producer.produce(str(i).encode(), topic=topic, key="k", on_delivery=reports.append)
        assert producer.flush(30.0)
    assert len(reports) == 10 and all(r.ok for r in reports)
    assert [r.offset for r in reports] == sorted(r.offset for r in reports)


def test_rebalance_callbacks_and_their_errors(broker: postroom.Broker, topic: str) -> None:
    assigned: list[tuple[str, int]] = []
    revoked: list[tuple[str, int]] = []
    with broker.consumer(unique("g"), topic, on_assigned=assigned.extend,
                         on_revoked=revoked.extend) as consumer:
        for _ in consume(consumer, 1, timeout=1.0):
            pass
        assert sorted(assigned) == [(topic, 0), (topic, 1), (topic, 2)]
        assert sorted(consumer.assignment()) == sorted(assigned)
    assert sorted(revoked) == sorted(assigned)

    def boom(partitions: list[tuple[str, int]]) -> None:
        raise RuntimeError("handler failed on " + str(len(partitions)))

    consumer = broker.consumer(unique("g"), topic, on_assigned=boom)
    with pytest.raises(RuntimeError, match="handler failed on 3"):
        for _ in range(300):
            consumer.poll(0.1)
    consumer.close()


def test_seek_and_manual_assignment(broker: postroom.Broker, topic: str) -> None:
    with broker.producer() as producer:
        producer.send_batch([str(i).encode() for i in range(10)], topic=topic, key="one")
    partition = next(p for p in range(3) if broker.watermarks(topic, p)[1] == 10)
    with broker.consumer(unique("g")) as consumer:
        consumer.assign([(topic, partition, -2)])
        assert [int(m.value) for m in consume(consumer, 10)] == list(range(10))
        consumer.seek(topic, partition, 6)
        assert [int(m.value) for m in consume(consumer, 4)] == [6, 7, 8, 9]
    assert broker.watermarks(topic, partition) == (0, 10)


def test_iteration_and_context_managers_close_clients(broker: postroom.Broker, topic: str) -> None:
    with broker.producer() as producer:
        producer.send(b"x", topic=topic)
    assert producer.closed
    with pytest.raises(errors.UsageError, match="closed"):
        producer.send(b"y", topic=topic)
    with broker.consumer(unique("g"), topic) as consumer:
        for message in consumer:
            assert message.value == b"x"
            break
    assert consumer.closed


def test_unknown_topic_is_a_usage_error(broker: postroom.Broker) -> None:
    with broker.producer(properties={"topic.metadata.propagation.max.ms": "1000"}) as producer, \
            pytest.raises(errors.UsageError, match="create the topic"):
        producer.send(b"x", topic=unique("missing"))


def test_too_large_message_is_refused_with_advice(broker: postroom.Broker, topic: str) -> None:
    with broker.producer() as producer, pytest.raises(errors.UsageError,
                                                      match="message.max.bytes"):
        producer.send(b"x" * 2_000_000, topic=topic)
    with broker.producer() as producer:
        result = producer.send_batch([b"ok", b"x" * 2_000_000, b"ok"], topic=topic,
                                     raise_on_error=False)
        assert result.failed == 1
        assert [i for i, _ in result.failures()] == [1]
        assert result[0].ok and result[2].ok


def test_topics_are_listed_and_described(broker: postroom.Broker, topic: str) -> None:
    names = [t.name for t in broker.topics()]
    assert topic in names
    info = broker.topic(topic)
    assert info is not None and info.partitions == 3
    assert broker.topic(unique("absent")) is None
    broker.create_topic(topic, 3, exist_ok=True)


def test_concurrent_mark_done_from_worker_threads(broker: postroom.Broker, topic: str) -> None:
    with broker.producer() as producer:
        producer.send_batch([(f"k{i % 5}", str(i).encode()) for i in range(500)], topic=topic)
    with broker.consumer(unique("g"), topic) as consumer:
        got = consume(consumer, 500)
        def finish(part: list[postroom.Message]) -> None:
            for m in part:
                consumer.mark_done(m)

        threads = [threading.Thread(target=finish, args=(got[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        committed = consumer.commit()
    per_partition: dict[int, int] = defaultdict(int)
    for m in got:
        per_partition[m.partition] = max(per_partition[m.partition], m.offset + 1)
    assert sorted(committed) == sorted((topic, p, o) for p, o in per_partition.items())


def test_batch_headers_from_a_generator_stay_per_item(broker: postroom.Broker,
                                                      topic: str) -> None:
    def items():  # a fresh, mutated headers list per item: no cross-item reuse allowed
        shared: list[tuple[str, bytes]] = []
        for i in range(50):
            shared.clear()
            shared.append(("i", str(i).encode()))
            yield ("k", str(i).encode(), list(shared))

    shared_headers = {"source": b"batch", "empty": None}
    with broker.producer() as producer:
        producer.send_batch(items(), topic=topic)
        producer.send_batch([("k", b"d", shared_headers)] * 5, topic=topic)
    with broker.consumer(unique("g"), topic) as consumer:
        got = consume(consumer, 55)
    assert [m.header("i") for m in got[:50]] == [m.value for m in got[:50]]
    assert all(m.headers == [("source", b"batch"), ("empty", None)] for m in got[50:])
