"""postroom and a foreign client (confluent-kafka-python, with the CloudEvents SDK's Kafka
binding) read each other's CloudEvents through the real broker."""

from __future__ import annotations

import json

import pytest
from cloudevents.http import CloudEvent
from cloudevents.kafka import KafkaMessage, from_binary, to_binary
from confluent_kafka import Consumer as ForeignConsumer
from confluent_kafka import Producer as ForeignProducer

import postroom

from .conftest import unique

pytestmark = pytest.mark.kafka


@pytest.fixture
def real(kafka_url: str) -> postroom.Broker:
    return postroom.connect(kafka_url)


@pytest.fixture
def real_topic(real: postroom.Broker):
    name = unique("interop")
    real.create_topic(name, 3)
    yield name
    real.delete_topic(name)


def test_foreign_binary_event_is_read_by_postroom(real: postroom.Broker, real_topic: str) -> None:
    foreign_event = CloudEvent({"type": "com.example.foreign", "source": "/confluent",
                                "subject": "s-1", "partitionkey": "acct-9",
                                "datacontenttype": "application/json"},
                               {"amount": 10})
    message = to_binary(foreign_event)
    producer = ForeignProducer({"bootstrap.servers": real.bootstrap_servers})
    producer.produce(real_topic, key=message.key, value=message.value,
                     headers=list(message.headers.items()))
    assert producer.flush(30) == 0

    with real.consumer(unique("g"), real_topic) as consumer:
        got = next(consumer.messages(idle_timeout=30.0))
    event = got.event()
    assert event.id == foreign_event["id"]
    assert event.type == "com.example.foreign" and event.subject == "s-1"
    assert event.json() == {"amount": 10}
    assert got.key == b"acct-9"


def test_postroom_event_is_read_by_foreign_client(real: postroom.Broker, real_topic: str) -> None:
    event = postroom.Event(type="com.example.postroom", source="/postroom", subject="x",
                           data={"n": 1}, extensions={"tenant": "acme"})
    with real.producer() as producer:
        producer.send(event, topic=real_topic, key="acct-1")

    consumer = ForeignConsumer({"bootstrap.servers": real.bootstrap_servers,
                                "group.id": unique("foreign"), "auto.offset.reset": "earliest"})
    consumer.subscribe([real_topic])
    try:
        msg = None
        for _ in range(300):
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                break
        assert msg is not None and msg.error() is None
        headers = dict(msg.headers())
        assert headers["ce_id"] == event.id.encode()
        assert headers["content-type"] == b"application/json"
        foreign = from_binary(KafkaMessage(headers=headers, key=msg.key(), value=msg.value()))
        assert foreign["id"] == event.id
        assert foreign["type"] == "com.example.postroom"
        assert foreign["tenant"] == "acme"
        assert foreign.data == {"n": 1}
        assert msg.key() == b"acct-1"
        assert json.loads(msg.value()) == {"n": 1}
    finally:
        consumer.close()


def test_idempotent_producer_is_enabled_against_the_real_broker(
        real: postroom.Broker, real_topic: str) -> None:
    with real.producer() as producer:
        producer.send(b"x", topic=real_topic)
        assert producer.idempotence_enabled
    with real.producer(idempotent=False) as producer:
        producer.send(b"x", topic=real_topic)
        assert not producer.idempotence_enabled
