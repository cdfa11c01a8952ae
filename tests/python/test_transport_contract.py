"""One contract for every transport, from Python: the same produce / consume / commit /
redeliver / dead-letter cases against the embedded broker, real Kafka and real Redis Streams
(the pytest side of tests/core/transport_contract.hpp)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

import postroom

from .conftest import unique


@pytest.fixture
def broker(any_broker: postroom.Broker) -> postroom.Broker:
    """Every transport (conftest.any_broker)."""
    return any_broker


@pytest.fixture
def topic(broker: postroom.Broker) -> Iterator[str]:
    name = unique("contract")
    broker.create_topic(name, 1)
    broker.create_topic(name + ".dlq", 1)
    yield name
    if not broker.is_embedded:
        for t in (name, name + ".dlq"):
            broker.delete_topic(t)


pytestmark = pytest.mark.contract


def test_produce_and_consume_keep_key_value_headers_and_order(broker: postroom.Broker,
                                                              topic: str) -> None:
    with broker.producer() as producer:
        producer.send(b"\x00first", topic=topic, key=b"k", headers=[("h", b"\xff"), ("n", None)])
        producer.send_batch([str(i).encode() for i in range(20)], topic=topic, key="k")
    with broker.consumer(unique("g"), topic) as consumer:
        got = list(consumer.messages(idle_timeout=1.0, limit=21))
    assert got[0].value == b"\x00first" and got[0].key == b"k"
    assert got[0].headers == [("h", b"\xff"), ("n", None)]
    assert [m.value for m in got[1:]] == [str(i).encode() for i in range(20)]
    assert len({m.position for m in got}) == 21


def test_committed_work_stays_done_and_undone_work_comes_back(broker: postroom.Broker,
                                                              topic: str) -> None:
    with broker.producer() as producer:
        producer.send_batch([str(i).encode() for i in range(10)], topic=topic)
    group = unique("g")
    with broker.consumer(group, topic) as consumer:
        first = list(consumer.messages(idle_timeout=1.0, limit=10))
        for m in first[:7]:
            consumer.mark_done(m)
        assert consumer.commit()
    # Kafka: the next member starts after the done prefix. Redis: the entries still pending
    # go to the next member once claimable.
    extra = {"claim_min_idle": 0.2, "claim_interval": 0.1} if broker.url.startswith("redis") \
        else {}
    with broker.consumer(group, topic, **extra) as consumer:  # type: ignore[arg-type]
        again = list(consumer.messages(idle_timeout=2.0))
    assert sorted(int(m.value or b"") for m in again) == [7, 8, 9]


def test_the_processor_dead_letters_a_poison_event_and_applies_the_rest_once(
        broker: postroom.Broker, topic: str) -> None:
    events = [("k", postroom.Event(type="order", source="/c", id=f"e-{i}")) for i in range(8)]
    events.insert(3, ("k", postroom.Event(type="poison", source="/c", id="poison")))
    with broker.producer() as producer:
        producer.send_batch(events, topic=topic)
    applied: Counter[str] = Counter()

    def handle(event: postroom.Event, context: postroom.HandlerContext) -> None:
        if event.type == "poison":
            raise postroom.errors.UsageError("cannot handle it")
        applied[event.id] += 1

    with postroom.Processor(broker, name=unique("p"), topics=topic, handler=handle,
                            retry=postroom.RetryPolicy(max_attempts=2,
                                                       initial_delay=0.01)) as processor:
        counters = processor.run(idle_timeout=1.5)
    assert counters.processed == 8 and counters.dead_lettered == 1
    assert set(applied.values()) == {1} and len(applied) == 8
    letters = broker.dead_letters(topic + ".dlq").list()
    assert [d.record.event().id for d in letters] == ["poison"]
    assert letters[0].original_topic == topic
